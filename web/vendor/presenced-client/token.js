/**
 * Where the client's token comes from, and the scheduled `refresh` of a
 * provider's token shortly before its JWT `exp`.
 */
import { toPresenceError } from "./errors.js";
import { jwtTimes } from "./jwt.js";
import { Timer } from "./runtime.js";
export function isProvider(source) {
    return typeof source === "function";
}
/** The shortest time between a token and its refresh, however short its life. */
export const MIN_REFRESH_DELAY_MS = 5000;
/**
 * How long after receiving a token to refresh it: `leadMs` before its end,
 * but at most half-way through its life, and never sooner than
 * `MIN_REFRESH_DELAY_MS`. The life is the token's own, `exp − iat`, so that a
 * client clock that is off does not matter (it is then assumed to start now,
 * as a provider's token is freshly issued); without `iat`, `exp` is compared
 * with the client clock.
 */
export function refreshDelayMs(times, leadMs, now) {
    const lifetime = times.iat !== null ? times.exp - times.iat : times.exp - now;
    const lead = Math.min(leadMs, lifetime / 2);
    return Math.max(MIN_REFRESH_DELAY_MS, lifetime - lead);
}
/**
 * Calls the provider shortly before the current token's end (see
 * `refreshDelayMs`) and hands the fresh token to the server. When that fails
 * the server will close with 4401 at `exp`, and the reconnect fetches a token
 * again.
 */
export class TokenRefresher {
    constructor(provider, clock, leadMs, hooks) {
        this.provider = provider;
        this.clock = clock;
        this.leadMs = leadMs;
        this.hooks = hooks;
        this.generation = 0;
        this.timer = new Timer(clock);
    }
    /** Plans the next refresh for the token the connection now uses. */
    schedule(token) {
        this.cancel();
        if (!this.provider || token === null)
            return;
        const times = jwtTimes(token);
        if (times === null)
            return;
        const generation = this.generation;
        this.timer.start(refreshDelayMs(times, this.leadMs, this.clock.now()), () => {
            void this.refresh(token, generation);
        });
    }
    cancel() {
        this.generation += 1;
        this.timer.cancel();
    }
    async refresh(current, generation) {
        try {
            const fresh = await this.provider();
            if (generation !== this.generation || fresh === current)
                return;
            await this.hooks.send(fresh);
            if (generation !== this.generation)
                return;
            this.hooks.accepted(fresh);
            this.schedule(fresh);
        }
        catch (err) {
            if (generation === this.generation)
                this.hooks.error(toPresenceError(err, "unauthorized"));
        }
    }
}
