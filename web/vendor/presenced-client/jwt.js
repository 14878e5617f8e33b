/**
 * Reads the `exp` claim of a JWT without verifying it: the client only needs
 * to know when to ask its token provider for a fresh one.
 */
/** Expiry of a JWT in ms since the epoch, or null if it has none or cannot be read. */
export function jwtExpiryMs(token) {
    const payload = token.split(".")[1];
    if (!payload)
        return null;
    try {
        const claims = JSON.parse(decodeBase64Url(payload));
        if (claims && typeof claims === "object" && "exp" in claims) {
            const exp = claims.exp;
            if (typeof exp === "number" && Number.isFinite(exp))
                return exp * 1000;
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
