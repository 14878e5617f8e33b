/**
 * Reference counts with a lingering release, shared by subscriptions, entered
 * channels and watched users. A key is *active* while it has references or
 * while its last reference was released less than the release delay ago, so a
 * component that unmounts and mounts again at once (React StrictMode, Fast
 * Refresh) never makes the server see the key go away.
 */
import type { Clock, TimerHandle } from "./runtime.js";

interface Entry {
  refs: number;
  /**
   * Set anew (from one counter of the set) on every release to zero, so that
   * an old linger timer cannot end a newer linger, even of a key forgotten
   * and taken again meanwhile.
   */
  generation: number;
  lingering: boolean;
}

export class RefSet<K> {
  private readonly entries = new Map<K, Entry>();
  private readonly timers = new Set<TimerHandle>();
  private generations = 0;

  /**
   * @param onInactive called with the keys whose linger ran out; keys released
   *   with no delay are returned by `release` instead.
   */
  constructor(
    private readonly clock: Clock,
    private readonly onInactive: (keys: K[]) => void,
  ) {}

  has(key: K): boolean {
    return this.entries.has(key);
  }

  refs(key: K): number {
    return this.entries.get(key)?.refs ?? 0;
  }

  keys(): K[] {
    return [...this.entries.keys()];
  }

  /** Adds one reference to each key; returns the keys that were not active before. */
  acquire(keys: Iterable<K>): K[] {
    const added: K[] = [];
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (entry) {
        entry.refs += 1;
        entry.lingering = false;
      } else {
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
  release(keys: Iterable<K>, delayMs: number): K[] {
    const expiring: Array<[K, number]> = [];
    const removed: K[] = [];
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
      if (entry.refs > 0) continue;
      if (delayMs <= 0) {
        this.entries.delete(key);
        removed.push(key);
      } else {
        entry.generation = ++this.generations;
        entry.lingering = true;
        expiring.push([key, entry.generation]);
      }
    }
    if (expiring.length > 0) this.expireLater(expiring, delayMs);
    return removed;
  }

  /** Forgets these keys, whatever their references, without reporting anything. */
  forget(keys: Iterable<K>): void {
    for (const key of keys) this.entries.delete(key);
  }

  /** Forgets every key and cancels pending lingers without reporting anything. */
  clear(): void {
    for (const handle of this.timers) this.clock.clearTimeout(handle);
    this.timers.clear();
    this.entries.clear();
  }

  private expireLater(expiring: Array<[K, number]>, delayMs: number): void {
    const handle = this.clock.setTimeout(() => {
      this.timers.delete(handle);
      const gone = expiring
        .filter(([key, generation]) => {
          const entry = this.entries.get(key);
          return entry !== undefined && entry.lingering && entry.generation === generation;
        })
        .map(([key]) => key);
      for (const key of gone) this.entries.delete(key);
      if (gone.length > 0) this.onInactive(gone);
    }, delayMs);
    this.timers.add(handle);
  }
}
