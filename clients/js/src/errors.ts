/**
 * The error type every failed request rejects with.
 */
import { ERROR_CODES, type ErrorCode, type ErrorFrame } from "./protocol.js";

export class PresenceError extends Error {
  override readonly name = "PresenceError";

  constructor(
    /** One of the protocol's error codes. */
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A request whose connection was lost before its reply came. It is an
 * `unavailable` error to the caller; internally it tells the state
 * synchroniser to carry the operation over to the next connection.
 */
export class ConnectionLostError extends PresenceError {
  constructor(message = "connection lost before the server replied") {
    super("unavailable", message);
  }
}

function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && (ERROR_CODES as readonly string[]).includes(value);
}

/** The error an `error` frame stands for (an unknown code counts as `internal`). */
export function errorFromFrame(frame: ErrorFrame): PresenceError {
  return new PresenceError(isErrorCode(frame.code) ? frame.code : "internal", String(frame.message ?? ""));
}

/** Normalises anything thrown (by a token provider, say) into a PresenceError. */
export function toPresenceError(err: unknown, code: ErrorCode = "internal"): PresenceError {
  if (err instanceof PresenceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PresenceError(code, message);
}
