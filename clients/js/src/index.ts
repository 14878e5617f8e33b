/**
 * @presenced/client: the framework-free client of the presenced presence server.
 */
export { createClient, PresenceClient } from "./client.js";
export { ChannelHandle, type SubscribeOptions } from "./channel.js";
export type { ChannelEvents, LeaveEvent, MessageEvent, UnsubscribedEvent } from "./channel-view.js";
export type { ConnectionEvents } from "./connection.js";
export type { Listener, Off } from "./emitter.js";
export { PresenceError } from "./errors.js";
export type { ClientOptions } from "./options.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export {
  CloseCode,
  ERROR_CODES,
  type ErrorCode,
  type Json,
  type JsonSafe,
  type LeaveReason,
  type Member,
  type MemberData,
  type MemberDataShape,
  type Occupancy,
  type PresenceEntry,
  type UnsubscribedReason,
  type UserStatus,
} from "./protocol.js";
export type {
  BroadcastChannelConstructor,
  BroadcastChannelLike,
  Clock,
  DocumentLike,
  EventSourceLike,
  LockManagerLike,
  StorageLike,
  TimerHandle,
  WebSocketConstructor,
  WebSocketLike,
} from "./runtime.js";
export type { OwnStatus } from "./state-sync.js";
export type { TokenSource } from "./token.js";
export type { CloseInfo, ConnectionState, TabSharing } from "./link/link.js";
export { VERSION } from "./version.js";
