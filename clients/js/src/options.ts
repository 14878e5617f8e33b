/**
 * Client options and their defaults.
 */
import type { BackoffOptions } from "./backoff.js";
import type { TabSharing } from "./link/link.js";
import {
  defaultBroadcastChannel,
  defaultDocument,
  defaultLocks,
  defaultSessionStorage,
  defaultWebSocket,
  defaultWindow,
  systemClock,
  type BroadcastChannelConstructor,
  type Clock,
  type DocumentLike,
  type EventSourceLike,
  type LockManagerLike,
  type StorageLike,
  type WebSocketConstructor,
} from "./runtime.js";
import type { TokenSource } from "./token.js";
import { CLIENT_NAME } from "./version.js";

export interface ClientOptions {
  /** WebSocket URL of the server, e.g. `wss://presence.example.com/v1/ws`. */
  url: string;
  /**
   * A JWT, a function returning a current JWT (called on every connect and
   * shortly before the token's `exp`), or null to connect as a guest.
   */
  token: TokenSource;
  /** WebSocket implementation. Default: the global `WebSocket` (pass `ws` in Node < 22). */
  WebSocket?: WebSocketConstructor;
  /** Timers and clock. Default: the host's. */
  clock?: Clock;
  /** Source of randomness for the backoff jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
  /** Where the resume token is kept across page loads. Default `sessionStorage` when usable; null for none. */
  storage?: StorageLike | null;
  /** Source of the `online` event. Default `window` when there is one; null for none. */
  window?: EventSourceLike | null;
  /** Source of `visibilitychange`. Default `document` when there is one; null for none. */
  document?: DocumentLike | null;
  /** Reconnect backoff: delay = random(0, min(capMs, baseMs * 2^attempt)). Default 500 ms and 30 s. */
  backoff?: BackoffOptions;
  /** How long a request waits for a connection before it rejects with `unavailable`. Default 10 s. */
  requestTimeoutMs?: number;
  /** How long a socket may take to open and be welcomed. Default 10 s. */
  connectTimeoutMs?: number;
  /** How long a released subscription, entry, watch or connection lingers before it is dropped. Default 1.5 s. */
  releaseDelayMs?: number;
  /** Report `away` after the page has been hidden this long; null disables. Default 60 s. */
  awayAfterHiddenMs?: number | null;
  /** How long before a provider token's `exp` to fetch and send a fresh one. Default 30 s. */
  refreshBeforeExpiryMs?: number;
  /**
   * At most one member data update per channel in this many milliseconds:
   * an update in a quiet channel is sent at once, later ones within the
   * interval are held back and the latest data is sent when it ends (last
   * value wins). Keeps an application updating a cursor at 60 Hz well under
   * the server's request rate limit (50/s per connection, burst 100).
   * 0 sends every update at once. Default 100 ms.
   */
  updateThrottleMs?: number;
  /** Sent to the server as `hello.client`. */
  clientName?: string;
  /**
   * Share one connection among all tabs of this origin that use this `url`:
   * one tab (the leader, elected with Web Locks) holds the socket and the
   * other tabs talk to it over a BroadcastChannel. Takes the export
   * `shareAcrossTabs` of `@presenced/client/share` (so that applications that
   * do not share do not bundle it); `false`, `null` or absent for a
   * connection of the page's own. Silently a connection of this page's own
   * where there is no BroadcastChannel. Default: no sharing.
   */
  shareAcrossTabs?: TabSharing | false | null;
  /** BroadcastChannel for `shareAcrossTabs`. Default the host's in browsers (not in Node); null disables sharing. */
  BroadcastChannel?: BroadcastChannelConstructor | null;
  /** Web Locks for the leader election of `shareAcrossTabs`. Default `navigator.locks`; null elects by heartbeats. */
  locks?: LockManagerLike | null;
}

export interface ResolvedOptions {
  url: string;
  token: TokenSource;
  WebSocket: WebSocketConstructor;
  clock: Clock;
  random: () => number;
  storage: StorageLike | null;
  window: EventSourceLike | null;
  document: DocumentLike | null;
  backoff: BackoffOptions;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  releaseDelayMs: number;
  awayAfterHiddenMs: number | null;
  refreshBeforeExpiryMs: number;
  updateThrottleMs: number;
  clientName: string;
  /** Null: no sharing. */
  shareAcrossTabs: TabSharing | null;
  BroadcastChannel: BroadcastChannelConstructor | null;
  locks: LockManagerLike | null;
}

export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const WebSocket = options.WebSocket ?? defaultWebSocket();
  if (!WebSocket) {
    throw new TypeError("presenced: no WebSocket implementation found; pass one as options.WebSocket");
  }
  return {
    url: options.url,
    token: options.token,
    WebSocket,
    clock: options.clock ?? systemClock,
    random: options.random ?? Math.random,
    storage: options.storage === undefined ? defaultSessionStorage() : options.storage,
    window: options.window === undefined ? defaultWindow() : options.window,
    document: options.document === undefined ? defaultDocument() : options.document,
    backoff: options.backoff ?? {},
    requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    releaseDelayMs: options.releaseDelayMs ?? 1_500,
    awayAfterHiddenMs: options.awayAfterHiddenMs === undefined ? 60_000 : options.awayAfterHiddenMs,
    refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? 30_000,
    updateThrottleMs: options.updateThrottleMs ?? 100,
    clientName: options.clientName ?? CLIENT_NAME,
    shareAcrossTabs: tabSharing(options.shareAcrossTabs),
    BroadcastChannel: options.BroadcastChannel === undefined ? defaultBroadcastChannel() : options.BroadcastChannel,
    locks: options.locks === undefined ? defaultLocks() : options.locks,
  };
}

/**
 * The `shareAcrossTabs` option checked: the sharing module's export, or null
 * for no sharing. Anything else (`true` in particular, what the option took
 * before sharing moved to an entry of its own) throws a TypeError.
 */
export function tabSharing(value: unknown): TabSharing | null {
  if (value === undefined || value === null || value === false) return null;
  if (typeof value === "object" && typeof (value as Partial<TabSharing>).openLink === "function") {
    return value as TabSharing;
  }
  throw new TypeError(
    'presenced: shareAcrossTabs takes the sharing module, not ' +
      (value === true ? "true" : typeof value) +
      ': import { shareAcrossTabs } from "@presenced/client/share" and pass it, ' +
      "as in createClient({ url, token, shareAcrossTabs })",
  );
}
