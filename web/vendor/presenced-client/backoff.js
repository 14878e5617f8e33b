/**
 * Reconnect delays: exponential backoff with full jitter
 * (delay = random(0, min(cap, base * 2^attempt))).
 */
export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 30000 };
/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt, options, random) {
    const base = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
    const cap = options.capMs ?? DEFAULT_BACKOFF.capMs;
    // Past ~2^30 the bound is the cap anyway; clamping keeps the arithmetic finite.
    const bound = Math.min(cap, base * 2 ** Math.min(attempt, 30));
    return Math.floor(random() * bound);
}
