/**
 * The throttle of member data updates: per channel, at most one update frame
 * per interval. An update in a quiet channel goes out at once; those that
 * follow within the interval are held back and the latest data (the desired
 * state keeps only the latest) goes out when the interval ends, so a cursor
 * moving at 60 Hz costs the server's rate limit 1000 / interval frames a
 * second per channel.
 */
import type { Clock, TimerHandle } from "./runtime.js";

interface ChannelSlot {
  /** When the last update of the channel went out. */
  sentAt: number;
  /** The pending trailing send, if any, and who waits for it. */
  timer: TimerHandle | null;
  waiters: { resolve: () => void; reject: (err: unknown) => void }[];
}

export class UpdateThrottle {
  private readonly channels = new Map<string, ChannelSlot>();

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    /** Brings the server in line with the channel's latest data. */
    private readonly send: (channel: string) => Promise<void>,
  ) {}

  /** Sends the channel's latest data now, or when the interval since the last send ends. */
  schedule(channel: string): Promise<void> {
    if (this.intervalMs <= 0) return this.send(channel);
    const now = this.clock.now();
    let slot = this.channels.get(channel);
    if (!slot || (slot.timer === null && now - slot.sentAt >= this.intervalMs)) {
      if (!slot) {
        slot = { sentAt: now, timer: null, waiters: [] };
        this.channels.set(channel, slot);
      }
      slot.sentAt = now;
      return this.send(channel);
    }
    const waiting = new Promise<void>((resolve, reject) => slot.waiters.push({ resolve, reject }));
    waiting.catch(() => {});
    if (slot.timer === null) {
      const held = slot;
      held.timer = this.clock.setTimeout(() => this.flush(channel, held), held.sentAt + this.intervalMs - now);
    }
    return waiting;
  }

  private flush(channel: string, slot: ChannelSlot): void {
    slot.timer = null;
    slot.sentAt = this.clock.now();
    const waiters = slot.waiters.splice(0);
    this.send(channel).then(
      () => waiters.forEach((waiter) => waiter.resolve()),
      (err: unknown) => waiters.forEach((waiter) => waiter.reject(err)),
    );
  }
}
