export class RefSet {
    /**
     * @param onInactive called with the keys whose linger ran out; keys released
     *   with no delay are returned by `release` instead.
     */
    constructor(clock, onInactive) {
        this.clock = clock;
        this.onInactive = onInactive;
        this.entries = new Map();
        this.timers = new Set();
        this.generations = 0;
    }
    has(key) {
        return this.entries.has(key);
    }
    refs(key) {
        return this.entries.get(key)?.refs ?? 0;
    }
    keys() {
        return [...this.entries.keys()];
    }
    /** Adds one reference to each key; returns the keys that were not active before. */
    acquire(keys) {
        const added = [];
        for (const key of keys) {
            const entry = this.entries.get(key);
            if (entry) {
                entry.refs += 1;
                entry.lingering = false;
            }
            else {
                this.entries.set(key, { refs: 1, generation: 0, lingering: false });
                added.push(key);
            }
        }
        return added;
    }
    /**
     * Drops one reference from each key. Keys left without references stay
     * active for `delayMs`, then are reported to `onInactive` unless acquired
     * again meanwhile. With a zero delay they become inactive at once and are
     * returned.
     */
    release(keys, delayMs) {
        const expiring = [];
        const removed = [];
        for (const key of keys) {
            const entry = this.entries.get(key);
            if (!entry || entry.refs === 0) {
                if (entry && delayMs <= 0) {
                    this.entries.delete(key);
                    removed.push(key);
                }
                continue;
            }
            entry.refs -= 1;
            if (entry.refs > 0)
                continue;
            if (delayMs <= 0) {
                this.entries.delete(key);
                removed.push(key);
            }
            else {
                entry.generation = ++this.generations;
                entry.lingering = true;
                expiring.push([key, entry.generation]);
            }
        }
        if (expiring.length > 0)
            this.expireLater(expiring, delayMs);
        return removed;
    }
    /** Forgets these keys, whatever their references, without reporting anything. */
    forget(keys) {
        for (const key of keys)
            this.entries.delete(key);
    }
    /** Forgets every key and cancels pending lingers without reporting anything. */
    clear() {
        for (const handle of this.timers)
            this.clock.clearTimeout(handle);
        this.timers.clear();
        this.entries.clear();
    }
    expireLater(expiring, delayMs) {
        const handle = this.clock.setTimeout(() => {
            this.timers.delete(handle);
            const gone = expiring
                .filter(([key, generation]) => {
                const entry = this.entries.get(key);
                return entry !== undefined && entry.lingering && entry.generation === generation;
            })
                .map(([key]) => key);
            for (const key of gone)
                this.entries.delete(key);
            if (gone.length > 0)
                this.onInactive(gone);
        }, delayMs);
        this.timers.add(handle);
    }
}
