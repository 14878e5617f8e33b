/**
 * A minimal typed event emitter. `on()` returns the matching `off()`.
 */
export class Emitter {
    constructor() {
        this.listeners = new Map();
    }
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set) {
            set = new Set();
            this.listeners.set(event, set);
        }
        // Wrap so that registering the same function twice gives two independent subscriptions.
        const entry = (value) => listener(value);
        set.add(entry);
        return () => {
            set.delete(entry);
        };
    }
    emit(event, value) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        // A listener that throws must not stop the others nor the client's own frame handling.
        for (const listener of [...set]) {
            try {
                listener(value);
            }
            catch (err) {
                reportListenerError(err);
            }
        }
    }
    /** Listeners registered for all events together. */
    get size() {
        let total = 0;
        for (const set of this.listeners.values())
            total += set.size;
        return total;
    }
}
function reportListenerError(err) {
    // Like an exception in a DOM event listener: reported, but the dispatch goes on.
    const report = globalThis.reportError;
    if (typeof report === "function")
        report(err);
    else
        console.error(err);
}
