/**
 * A minimal typed event emitter. `on()` returns the matching `off()`.
 */

export type Listener<T> = (value: T) => void;
export type Off = () => void;

export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): Off {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    // Wrap so that registering the same function twice gives two independent subscriptions.
    const entry: Listener<Events[K]> = (value) => listener(value);
    set.add(entry as Listener<never>);
    return () => {
      set.delete(entry as Listener<never>);
    };
  }

  emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    // A listener that throws must not stop the others nor the client's own frame handling.
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }

  /** Listeners registered for all events together. */
  get size(): number {
    let total = 0;
    for (const set of this.listeners.values()) total += set.size;
    return total;
  }
}

function reportListenerError(err: unknown): void {
  // Like an exception in a DOM event listener: reported, but the dispatch goes on.
  const report = (globalThis as { reportError?: (err: unknown) => void }).reportError;
  if (typeof report === "function") report(err);
  else console.error(err);
}
