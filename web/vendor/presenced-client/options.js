import { defaultBroadcastChannel, defaultDocument, defaultLocks, defaultSessionStorage, defaultWebSocket, defaultWindow, systemClock, } from "./runtime.js";
import { CLIENT_NAME } from "./version.js";
export function resolveOptions(options) {
    const WebSocket = options.WebSocket ?? defaultWebSocket();
    if (!WebSocket) {
        throw new TypeError("presenced: no WebSocket implementation found; pass one as options.WebSocket");
    }
    return {
        url: options.url,
        token: options.token,
        WebSocket,
        clock: options.clock ?? systemClock,
        random: options.random ?? Math.random,
        storage: options.storage === undefined ? defaultSessionStorage() : options.storage,
        window: options.window === undefined ? defaultWindow() : options.window,
        document: options.document === undefined ? defaultDocument() : options.document,
        backoff: options.backoff ?? {},
        requestTimeoutMs: options.requestTimeoutMs ?? 10000,
        connectTimeoutMs: options.connectTimeoutMs ?? 10000,
        releaseDelayMs: options.releaseDelayMs ?? 1500,
        awayAfterHiddenMs: options.awayAfterHiddenMs === undefined ? 60000 : options.awayAfterHiddenMs,
        refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? 30000,
        updateThrottleMs: options.updateThrottleMs ?? 100,
        clientName: options.clientName ?? CLIENT_NAME,
        shareAcrossTabs: tabSharing(options.shareAcrossTabs),
        BroadcastChannel: options.BroadcastChannel === undefined ? defaultBroadcastChannel() : options.BroadcastChannel,
        locks: options.locks === undefined ? defaultLocks() : options.locks,
    };
}
/**
 * The `shareAcrossTabs` option checked: the sharing module's export, or null
 * for no sharing. Anything else (`true` in particular, what the option took
 * before sharing moved to an entry of its own) throws a TypeError.
 */
export function tabSharing(value) {
    if (value === undefined || value === null || value === false)
        return null;
    if (typeof value === "object" && typeof value.openLink === "function") {
        return value;
    }
    throw new TypeError('presenced: shareAcrossTabs takes the sharing module, not ' +
        (value === true ? "true" : typeof value) +
        ': import { shareAcrossTabs } from "@presenced/client/share" and pass it, ' +
        "as in createClient({ url, token, shareAcrossTabs })");
}
