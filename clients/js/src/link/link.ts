/**
 * What carries a connection's frames: the `Link` a `Connection` talks
 * through, and its events. The core's link is a `Transport` (transport.ts, a
 * socket of the page's own). With `shareAcrossTabs` it is instead a link to
 * the socket of another tab, made by the sharing module (`src/share/`, the
 * entry `@presenced/client/share`) through the `TabSharing` it exports, so
 * that an application that never shares never bundles it.
 */
import type { Emitter } from "../emitter.js";
import type { PresenceError } from "../errors.js";
import type { ResolvedOptions } from "../options.js";
import type { ClientFrame, OutgoingFrame, ServerFrame, WelcomeFrame } from "../protocol.js";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface LinkEvents {
  state: ConnectionState;
  /** A `welcome` arrived: the connection is up. */
  welcome: WelcomeFrame;
  /** Every frame after `welcome` except `pong`. */
  frame: ServerFrame;
  /** A connection that had been welcomed is gone. */
  lost: CloseInfo;
  /** Closed with 4409 by the server's HTTP API: no reconnect. */
  kicked: CloseInfo;
  error: PresenceError;
  /** The session was ended elsewhere (a `logout()` in another tab sharing the connection). */
  ended: PresenceError;
}

/**
 * What a connection needs from the thing that carries its frames: a
 * `Transport` (its own socket) or, with `shareAcrossTabs`, a link to the
 * socket of another tab.
 */
export interface Link {
  readonly events: Emitter<LinkEvents>;
  readonly state: ConnectionState;
  readonly isConnected: boolean;
  /** Whether the browser says it is offline (then nothing may call the token provider). */
  readonly offline: boolean;
  /** The token the connection is authenticated with (null when another tab holds it). */
  readonly currentToken: string | null;
  /** A `refresh` succeeded: the connection now runs on this token. */
  tokenRefreshed(token: string): void;
  start(): void;
  /** Closes for good (until `start` again). */
  stop(): void;
  /** Writes a frame to the live connection; false when there is none. */
  send(frame: OutgoingFrame | ClientFrame): boolean;
}

/**
 * What the `shareAcrossTabs` option takes: the `shareAcrossTabs` export of
 * `@presenced/client/share`. Opaque to applications.
 */
export interface TabSharing {
  /**
   * @internal Opens this page's link to the connection the tabs share; null
   * where the host cannot open one (the page then gets a connection of its
   * own).
   */
  readonly openLink: (options: ResolvedOptions) => Link | null;
}
