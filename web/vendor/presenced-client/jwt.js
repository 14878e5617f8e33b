/**
 * Reads the `exp` and `iat` claims of a JWT without verifying it: the client
 * only needs to know when to ask its token provider for a fresh one.
 */
/** Expiry of a JWT in ms since the epoch, or null if it has none or cannot be read. */
export function jwtExpiryMs(token) {
    return jwtTimes(token)?.exp ?? null;
}
/** `exp` and `iat` of a JWT in ms since the epoch; null without a readable `exp`. */
export function jwtTimes(token) {
    const payload = token.split(".")[1];
    if (!payload)
        return null;
    try {
        const claims = JSON.parse(decodeBase64Url(payload));
        if (claims && typeof claims === "object") {
            const { exp, iat } = claims;
            if (typeof exp === "number" && Number.isFinite(exp)) {
                return { exp: exp * 1000, iat: typeof iat === "number" && Number.isFinite(iat) ? iat * 1000 : null };
            }
        }
    }
    catch {
        // Not a JWT we can read: no scheduled refresh.
    }
    return null;
}
function decodeBase64Url(input) {
    const base64 = input.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
}
