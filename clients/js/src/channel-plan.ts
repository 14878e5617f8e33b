/**
 * Which frames bring a channel on the server from one state to another. The
 * same planner serves live changes (from the state the client last asked for)
 * and recovery after a reconnect (from nothing, or from an unknown state when
 * a request may or may not have reached the server).
 */
import type { ClientFrame, MemberData } from "./protocol.js";

/** What this connection has (or should have) on the server for one channel. */
export interface ChannelIntent {
  subscribed: boolean;
  entered: boolean;
  occupancy: boolean;
  /** Member data to enter with; undefined keeps whatever the server has. */
  data: MemberData | undefined;
}

export const NOT_SUBSCRIBED: ChannelIntent = Object.freeze({
  subscribed: false,
  entered: false,
  occupancy: false,
  data: undefined,
});

/** Unknown server state: only idempotent frames that establish `to` whatever was there. */
export const UNKNOWN = null;

export function planChannel(
  channel: string,
  from: ChannelIntent | typeof UNKNOWN,
  to: ChannelIntent,
): ClientFrame[] {
  if (!to.subscribed) {
    return from === UNKNOWN || from.subscribed ? [{ t: "unsubscribe", channel }] : [];
  }
  const subscribe = subscribeFrame(channel, to.occupancy);
  if (from === UNKNOWN) {
    if (to.entered) return [...(to.occupancy ? [subscribe] : []), enterFrame(channel, to.data)];
    // `leave` may answer `not_member`, which the caller accepts.
    return [subscribe, { t: "leave", channel }];
  }

  const needsSubscribe = !from.subscribed || (to.occupancy && !from.occupancy);
  const frames: ClientFrame[] = [];
  if (to.entered && !from.entered) {
    // `enter` implies `subscribe`, except for the occupancy flag.
    if (needsSubscribe && to.occupancy) frames.push(subscribe);
    frames.push(enterFrame(channel, to.data));
    return frames;
  }
  if (needsSubscribe) frames.push(subscribe);
  if (to.entered) {
    if (to.data !== undefined && !sameJson(from.data, to.data)) {
      frames.push({ t: "update", channel, data: to.data });
    }
  } else if (from.entered) {
    frames.push({ t: "leave", channel });
  }
  return frames;
}

function subscribeFrame(channel: string, occupancy: boolean): ClientFrame {
  return occupancy ? { t: "subscribe", channel, occupancy: true } : { t: "subscribe", channel };
}

function enterFrame(channel: string, data: MemberData | undefined): ClientFrame {
  return data === undefined ? { t: "enter", channel } : { t: "enter", channel, data };
}

/** Structural equality of JSON values (key order of objects does not matter). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((value, i) => sameJson(value, other[i]));
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  return (
    keys.length === Object.keys(right).length &&
    keys.every((key) => Object.prototype.hasOwnProperty.call(right, key) && sameJson(left[key], right[key]))
  );
}
