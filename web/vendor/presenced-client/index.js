/**
 * @presenced/client: the framework-free client of the presenced presence server.
 */
export { createClient, PresenceClient } from "./client.js";
export { ChannelHandle } from "./channel.js";
export { PresenceError } from "./errors.js";
export { backoffDelay } from "./backoff.js";
export { CloseCode, ERROR_CODES, } from "./protocol.js";
export { VERSION } from "./version.js";
