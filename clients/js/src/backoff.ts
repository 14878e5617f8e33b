/**
 * Reconnect delays: exponential backoff with full jitter
 * (delay = random(0, min(cap, base * 2^attempt))).
 */

export interface BackoffOptions {
  /** Delay bound of the first retry, in ms. Default 500. */
  baseMs?: number;
  /** Largest delay bound, in ms. Default 30,000. */
  capMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number): number {
  const base = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const cap = options.capMs ?? DEFAULT_BACKOFF.capMs;
  // Past ~2^30 the bound is the cap anyway; clamping keeps the arithmetic finite.
  const bound = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}
