/**
 * Where the client's token comes from, and the scheduled `refresh` of a
 * provider's token shortly before its JWT `exp`.
 */
import { toPresenceError, type PresenceError } from "./errors.js";
import { jwtTimes, type JwtTimes } from "./jwt.js";
import { Timer, type Clock } from "./runtime.js";

/**
 * A fixed JWT, a function returning a current JWT (called on every connect and
 * before expiry), or null to connect as a guest.
 */
export type TokenSource = string | null | (() => string | Promise<string>);

export type TokenProvider = () => string | Promise<string>;

export function isProvider(source: TokenSource): source is TokenProvider {
  return typeof source === "function";
}

export interface TokenRefresherHooks {
  /** Sends `refresh{token}` and resolves on the server's `ok`. */
  send(token: string): Promise<unknown>;
  /** The server accepted the token: it is now the connection's token. */
  accepted(token: string): void;
  /** Whether the browser says it is offline: the provider is not called then. */
  offline(): boolean;
  error(error: PresenceError): void;
}

/** The shortest time between a token and its refresh, however short its life. */
export const MIN_REFRESH_DELAY_MS = 5_000;

/**
 * How long after receiving a token to refresh it: `leadMs` before its end,
 * but at most half-way through its life, and never sooner than
 * `MIN_REFRESH_DELAY_MS`. The life is the token's own, `exp − iat`, so that a
 * client clock that is off does not matter (it is then assumed to start now,
 * as a provider's token is freshly issued); without `iat`, `exp` is compared
 * with the client clock.
 */
export function refreshDelayMs(times: JwtTimes, leadMs: number, now: number): number {
  const lifetime = times.iat !== null ? times.exp - times.iat : times.exp - now;
  const lead = Math.min(leadMs, lifetime / 2);
  return Math.max(MIN_REFRESH_DELAY_MS, lifetime - lead);
}

/** First delay before trying a failed refresh again; it doubles up to `REFRESH_RETRY_CAP_MS`. */
export const REFRESH_RETRY_BASE_MS = 1_000;
export const REFRESH_RETRY_CAP_MS = 30_000;

/**
 * Calls the provider shortly before the current token's end (see
 * `refreshDelayMs`) and hands the fresh token to the server. When the
 * provider fails, gives the token the connection already has, or the server
 * refuses the new one, it tries again with backoff (1 s, doubling up to
 * 30 s, and at most half of the time left, so that the tries close in on the
 * token's end) until the token expires. Only then does the server close with
 * 4401, and the reconnect fetches a token again. While the browser says it is
 * offline the provider is not called; the tries go on without it.
 */
export class TokenRefresher {
  private readonly timer: Timer;
  private generation = 0;
  /** When the connection's token ends, on the client clock. */
  private deadline = 0;

  constructor(
    private readonly provider: TokenProvider | null,
    private readonly clock: Clock,
    private readonly leadMs: number,
    private readonly hooks: TokenRefresherHooks,
  ) {
    this.timer = new Timer(clock);
  }

  /** Plans the next refresh for the token the connection now uses. */
  schedule(token: string | null): void {
    this.cancel();
    if (!this.provider || token === null) return;
    const times = jwtTimes(token);
    if (times === null) return;
    const now = this.clock.now();
    this.deadline = times.iat !== null ? now + (times.exp - times.iat) : times.exp;
    const generation = this.generation;
    this.timer.start(refreshDelayMs(times, this.leadMs, now), () => {
      void this.refresh(token, generation, 0);
    });
  }

  cancel(): void {
    this.generation += 1;
    this.timer.cancel();
  }

  private async refresh(current: string, generation: number, attempt: number): Promise<void> {
    if (this.hooks.offline()) {
      this.retry(current, generation, attempt);
      return;
    }
    try {
      const fresh = await this.provider!();
      if (generation !== this.generation) return;
      if (fresh === current) {
        // Nothing newer yet (a provider that caches, say): ask again later.
        this.retry(current, generation, attempt);
        return;
      }
      await this.hooks.send(fresh);
      if (generation !== this.generation) return;
      this.hooks.accepted(fresh);
      this.schedule(fresh);
    } catch (err) {
      if (generation !== this.generation) return;
      this.hooks.error(toPresenceError(err, "unauthorized"));
      this.retry(current, generation, attempt);
    }
  }

  /** Tries again while the token has at least a second left. */
  private retry(current: string, generation: number, attempt: number): void {
    const left = this.deadline - this.clock.now();
    if (left <= REFRESH_RETRY_BASE_MS) return;
    const backoff = Math.min(REFRESH_RETRY_CAP_MS, REFRESH_RETRY_BASE_MS * 2 ** Math.min(attempt, 30));
    const delay = Math.max(REFRESH_RETRY_BASE_MS, Math.min(backoff, left / 2));
    this.timer.start(delay, () => {
      void this.refresh(current, generation, attempt + 1);
    });
  }
}
