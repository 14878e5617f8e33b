/**
 * @presenced/client/share: one connection for all tabs of an origin. Pass
 * this entry's `shareAcrossTabs` as the option of the same name:
 *
 *     import { createClient } from "@presenced/client";
 *     import { shareAcrossTabs } from "@presenced/client/share";
 *     createClient({ url, token, shareAcrossTabs });
 *
 * It lives in an entry of its own so that applications that never share
 * never bundle it. The parts: the messages tabs exchange (messages.ts), the
 * leader election (election.ts), a tab's link to the leader (shared-link.ts)
 * and the leader's side, which holds the socket and serves every tab the
 * union of what they want (tab-leader.ts).
 */
import type { TabSharing } from "../link/link.js";
import { SharedLink } from "./shared-link.js";

export type { TabSharing } from "../link/link.js";

/** The value of the `shareAcrossTabs` client option that turns sharing on. */
export const shareAcrossTabs: TabSharing = {
  openLink: (options) => SharedLink.open(options),
};
