/**
 * Where the client's token comes from, and the scheduled `refresh` of a
 * provider's token shortly before its JWT `exp`.
 */
import { toPresenceError } from "./errors.js";
import { jwtExpiryMs } from "./jwt.js";
import { Timer } from "./runtime.js";
export function isProvider(source) {
    return typeof source === "function";
}
/**
 * Calls the provider `leadMs` before the current token's `exp` and hands the
 * fresh token to the server. When that fails the server will close with 4401
 * at `exp`, and the reconnect fetches a token again.
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
        const expiry = jwtExpiryMs(token);
        if (expiry === null)
            return;
        const generation = this.generation;
        this.timer.start(expiry - this.leadMs - this.clock.now(), () => {
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
