/**
 * Wire types of the presenced protocol, version 1: the frames the client sends
 * and receives, and the close codes it reacts to. Nothing here has behaviour.
 */

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Member data is always a JSON object. The default type of members' data. */
export type MemberData = { [key: string]: Json };

/**
 * A type whose values are JSON as they are: `Json`, or objects (interfaces
 * included) and arrays of such values. `undefined` is allowed where
 * `JSON.stringify` drops it (optional fields). Functions, `Date`, `Map`,
 * `bigint` and the like are not.
 */
export type JsonSafe<T> = T extends Json
  ? T
  : T extends undefined
    ? T
    : T extends (...args: never[]) => unknown
      ? never
      : T extends object
        ? { [K in keyof T]: JsonSafe<T[K]> }
        : never;

/**
 * The constraint of a member data type `D`: a JSON object, written as an
 * `interface` or a type alias, e.g. `client.channel<{ name: string; cursor:
 * { x: number; y: number } | null }>("room")`. Arrays and primitives are not
 * member data.
 */
export type MemberDataShape<D> = { [K in keyof D]: JsonSafe<D[K]> } & { readonly length?: never } & object;

export type UserStatus = "online" | "away" | "offline";

/**
 * A member of a channel, with data of type `D`. Guests see only `user` and the
 * public fields of `data` (the type does not tell).
 */
export interface Member<D = MemberData> {
  user: string;
  data: D;
  /** The user's connections in the channel as of the frame (absent for guests). */
  conns?: number;
  /** RFC 3339 time the user joined (absent for guests). */
  since?: string;
}

/** Status of a watched user. */
export interface PresenceEntry {
  status: UserStatus;
  /** RFC 3339 time the user entered this status, or null if never seen (absent for guests). */
  since?: string | null;
  /** RFC 3339 time the user last had a live connection, or null if never seen (absent for guests). */
  last_seen?: string | null;
}

export interface Occupancy {
  /** Distinct users in the channel. */
  members: number;
  /** Their connections in the channel. */
  connections: number;
}

export type LeaveReason = "left" | "timeout" | "logout" | "kicked";

export const ERROR_CODES = [
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_member",
  "too_large",
  "rate_limited",
  "limit_exceeded",
  "unavailable",
  "internal",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

// ---------------------------------------------------------------- client → server

export type ClientFrame =
  | { t: "hello"; token: string | null; resume?: string; client?: string }
  | { t: "subscribe"; channel: string; occupancy?: boolean }
  | { t: "unsubscribe"; channel: string }
  | { t: "enter"; channel: string; data?: MemberData }
  | { t: "update"; channel: string; data: MemberData }
  | { t: "leave"; channel: string }
  | { t: "watch"; users: string[] }
  | { t: "unwatch"; users: string[] }
  | { t: "status"; status: "online" | "away" }
  | { t: "publish"; channel: string; data: Json }
  | { t: "ping" }
  | { t: "refresh"; token: string }
  | { t: "bye" };

/** A request as sent: any client frame, optionally with a request id. */
export type OutgoingFrame = ClientFrame & { id?: number };

// ---------------------------------------------------------------- server → client

export interface WelcomeFrame {
  t: "welcome";
  id?: number;
  conn: string;
  user: string | null;
  session: string;
  resumed: boolean;
  heartbeat_ms: number;
  grace_ms: number;
}

export interface OkFrame {
  t: "ok";
  id: number;
  [field: string]: Json | undefined;
}

export interface ErrorFrame {
  t: "error";
  id?: number;
  code: ErrorCode;
  message: string;
}

export interface SyncFrame {
  t: "sync";
  channel: string;
  seq: number;
  members: Member[];
  more: boolean;
}

export interface JoinFrame {
  t: "join";
  channel: string;
  seq: number;
  member: Member;
}

export interface UpdateFrame {
  t: "update";
  channel: string;
  seq: number;
  member: Member;
}

export interface LeaveFrame {
  t: "leave";
  channel: string;
  seq: number;
  user: string;
  reason: LeaveReason;
}

export interface DiffFrame {
  t: "diff";
  channel: string;
  seq: number;
  joins: Member[];
  updates: Member[];
  leaves: string[];
}

export interface OccupancyFrame extends Occupancy {
  t: "occupancy";
  channel: string;
}

export interface PresenceFrame {
  t: "presence";
  users: Record<string, PresenceEntry>;
}

export interface MessageFrame {
  t: "message";
  channel: string;
  from: string | null;
  data: Json;
}

export interface PongFrame {
  t: "pong";
}

/** Why the server ended a subscription: `forbidden`, the connection may no longer see the channel. */
export type UnsubscribedReason = "forbidden";

/**
 * The server ended this connection's subscription to the channel (and its
 * membership): a `refresh` or `resume` with narrower rights, or changed
 * channel rules after a restart. Nothing more of the channel follows.
 */
export interface UnsubscribedFrame {
  t: "unsubscribed";
  channel: string;
  reason: UnsubscribedReason;
}

/** Frames that change a channel's member set and carry a `seq`. */
export type MemberEventFrame = JoinFrame | UpdateFrame | LeaveFrame | DiffFrame;

export type ServerFrame =
  | WelcomeFrame
  | OkFrame
  | ErrorFrame
  | SyncFrame
  | MemberEventFrame
  | OccupancyFrame
  | PresenceFrame
  | MessageFrame
  | PongFrame
  | UnsubscribedFrame;

/** WebSocket close codes the server uses. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolViolation: 4400,
  Unauthorized: 4401,
  Forbidden: 4403,
  HelloTimeout: 4408,
  Kicked: 4409,
  FrameTooBig: 4413,
  RateLimited: 4429,
} as const;

/** Close reason sent with 1000 when a resume on another socket took over the session. */
export const REPLACED_REASON = "replaced";

/** Users per `watch`/`unwatch` request allowed by the server. */
export const MAX_USERS_PER_WATCH = 500;
