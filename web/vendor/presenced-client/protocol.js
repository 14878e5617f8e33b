/**
 * Wire types of the presenced protocol, version 1: the frames the client sends
 * and receives, and the close codes it reacts to. Nothing here has behaviour.
 */
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
];
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
};
/** Close reason sent with 1000 when a resume on another socket took over the session. */
export const REPLACED_REASON = "replaced";
/** Users per `watch`/`unwatch` request allowed by the server. */
export const MAX_USERS_PER_WATCH = 500;
