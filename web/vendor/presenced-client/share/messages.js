export const MESSAGE_VERSION = 1;
export function isTabMessage(data) {
    if (typeof data !== "object" || data === null)
        return false;
    const message = data;
    return message.v === MESSAGE_VERSION && typeof message.kind === "string" && typeof message.from === "string";
}
/** Whether a message is meant for `id` (messages without `to` are for everyone). */
export function isFor(message, id) {
    const { to } = message;
    if (to === undefined)
        return true;
    return typeof to === "string" ? to === id : to.includes(id);
}
/** Whether a message has recipients other than `id`. */
export function isForOthers(message, id) {
    const { to } = message;
    if (to === undefined)
        return true;
    return typeof to === "string" ? to !== id : to.some((recipient) => recipient !== id);
}
export function channelName(url) {
    return `presenced:tabs:${url}`;
}
export function leaderLockName(url) {
    return `presenced:leader:${url}`;
}
/** Held by every tab while it takes part; granted to the leader once the tab is gone. */
export function tabLockName(url, tab) {
    return `presenced:tab:${url}:${tab}`;
}
let counter = 0;
/** A random id for a tab's part in sharing (not security sensitive). */
export function randomId() {
    const crypto = globalThis.crypto;
    let random = "";
    if (crypto && typeof crypto.getRandomValues === "function") {
        random = Array.from(crypto.getRandomValues(new Uint8Array(9)), (b) => b.toString(16).padStart(2, "0")).join("");
    }
    else {
        random = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    }
    counter += 1;
    return `${random}-${counter.toString(36)}`;
}
/** A copy as a BroadcastChannel would deliver it, for messages a tab sends to itself. */
export function cloneMessage(message) {
    const clone = globalThis.structuredClone;
    return typeof clone === "function" ? clone(message) : JSON.parse(JSON.stringify(message));
}
/** An AbortController where the host has one. */
export function abortController() {
    return typeof AbortController === "function" ? new AbortController() : null;
}
/** Without Web Locks, how often followers tell the leader they are alive. */
export const ALIVE_MS = 1000;
