export class UpdateThrottle {
    constructor(clock, intervalMs, 
    /** Brings the server in line with the channel's latest data. */
    send) {
        this.clock = clock;
        this.intervalMs = intervalMs;
        this.send = send;
        this.channels = new Map();
    }
    /** Sends the channel's latest data now, or when the interval since the last send ends. */
    schedule(channel) {
        if (this.intervalMs <= 0)
            return this.send(channel);
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
        const waiting = new Promise((resolve, reject) => slot.waiters.push({ resolve, reject }));
        waiting.catch(() => { });
        if (slot.timer === null) {
            const held = slot;
            held.timer = this.clock.setTimeout(() => this.flush(channel, held), held.sentAt + this.intervalMs - now);
        }
        return waiting;
    }
    flush(channel, slot) {
        slot.timer = null;
        slot.sentAt = this.clock.now();
        const waiters = slot.waiters.splice(0);
        this.send(channel).then(() => waiters.forEach((waiter) => waiter.resolve()), (err) => waiters.forEach((waiter) => waiter.reject(err)));
    }
}
