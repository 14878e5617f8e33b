/**
 * The error type every failed request rejects with.
 */
import { ERROR_CODES } from "./protocol.js";
export class PresenceError extends Error {
    constructor(
    /** One of the protocol's error codes. */
    code, message) {
        super(message);
        this.code = code;
        this.name = "PresenceError";
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
function isErrorCode(value) {
    return typeof value === "string" && ERROR_CODES.includes(value);
}
/** The error an `error` frame stands for (an unknown code counts as `internal`). */
export function errorFromFrame(frame) {
    return new PresenceError(isErrorCode(frame.code) ? frame.code : "internal", String(frame.message ?? ""));
}
/** Normalises anything thrown (by a token provider, say) into a PresenceError. */
export function toPresenceError(err, code = "internal") {
    if (err instanceof PresenceError)
        return err;
    const message = err instanceof Error ? err.message : String(err);
    return new PresenceError(code, message);
}
