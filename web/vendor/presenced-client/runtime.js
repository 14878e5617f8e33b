/**
 * Everything the client takes from its environment, behind small interfaces so
 * that tests (or non-browser hosts) can supply their own: the WebSocket
 * constructor, timers and clock, randomness, storage, the page's events, and
 * for `shareAcrossTabs` the BroadcastChannel and Web Locks.
 */
/** Timers and clock of the host, looked up at call time so that test fakes installed later apply. */
export const systemClock = {
    now: () => Date.now(),
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle),
};
export function defaultWebSocket() {
    return globalThis.WebSocket;
}
/** `sessionStorage` when the host has a usable one (absent in Node, may throw in sandboxed frames). */
export function defaultSessionStorage() {
    try {
        const storage = globalThis.sessionStorage;
        if (!storage)
            return null;
        const probe = "presenced:probe";
        storage.setItem(probe, "1");
        storage.removeItem(probe);
        return storage;
    }
    catch {
        return null;
    }
}
export function defaultWindow() {
    const win = globalThis.window;
    return win && typeof win.addEventListener === "function" ? win : null;
}
export function defaultDocument() {
    const doc = globalThis.document;
    return doc && typeof doc.addEventListener === "function" ? doc : null;
}
/**
 * The host's BroadcastChannel in a browser page or worker. Node has one too,
 * but no tabs to share with (and an open channel keeps the process alive).
 */
export function defaultBroadcastChannel() {
    const host = globalThis;
    if (typeof host.BroadcastChannel !== "function")
        return null;
    if (host.document === undefined && host.WorkerGlobalScope === undefined)
        return null;
    return host.BroadcastChannel;
}
/** `navigator.locks` when the host has Web Locks. */
export function defaultLocks() {
    const locks = globalThis.navigator?.locks;
    return locks && typeof locks.request === "function" ? locks : null;
}
/** Subscribes to an event on an optional source and returns the unsubscribe function. */
export function listen(source, type, listener) {
    if (!source)
        return () => { };
    source.addEventListener(type, listener);
    return () => source.removeEventListener(type, listener);
}
/** A single-shot timer that can be re-armed and cancelled. */
export class Timer {
    constructor(clock) {
        this.clock = clock;
    }
    get pending() {
        return this.handle !== undefined;
    }
    start(ms, callback) {
        this.cancel();
        this.handle = this.clock.setTimeout(() => {
            this.handle = undefined;
            callback();
        }, Math.max(0, ms));
    }
    cancel() {
        if (this.handle !== undefined) {
            this.clock.clearTimeout(this.handle);
            this.handle = undefined;
        }
    }
}
