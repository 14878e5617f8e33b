/**
 * Request/response matching: every request gets an integer `id` and a promise
 * settled by the `ok` or `error` frame with the same `id`. Requests made while
 * no connection is up wait in a queue until one is, or fail with `unavailable`
 * after a timeout.
 */
import { ConnectionLostError, PresenceError, errorFromFrame } from "./errors.js";
import { Timer } from "./runtime.js";
export class RequestTracker {
    /**
     * @param transmit writes a frame to the live connection; returns false when there is none.
     */
    constructor(transmit, clock, queueTimeoutMs) {
        this.transmit = transmit;
        this.clock = clock;
        this.queueTimeoutMs = queueTimeoutMs;
        this.nextId = 1;
        this.inflight = new Map();
        this.queue = [];
    }
    /** Sends at once if connected, else queues the request until a connection is up. */
    request(frame) {
        return new Promise((resolve, reject) => {
            if (this.trySend(frame, { resolve, reject }))
                return;
            const timer = new Timer(this.clock);
            const queued = { frame, resolve, reject, timer };
            timer.start(this.queueTimeoutMs, () => {
                this.queue = this.queue.filter((q) => q !== queued);
                reject(new PresenceError("unavailable", `not connected within ${this.queueTimeoutMs} ms`));
            });
            this.queue.push(queued);
        });
    }
    /** Sends on the live connection only; rejects with ConnectionLostError when there is none. */
    send(frame) {
        return new Promise((resolve, reject) => {
            if (!this.trySend(frame, { resolve, reject }))
                reject(new ConnectionLostError("not connected"));
        });
    }
    /** Settles the request a reply belongs to; false when the reply matches none. */
    settle(frame) {
        if (frame.id === undefined)
            return false;
        const pending = this.inflight.get(frame.id);
        if (!pending)
            return false;
        this.inflight.delete(frame.id);
        if (frame.t === "ok")
            pending.resolve(frame);
        else
            pending.reject(errorFromFrame(frame));
        return true;
    }
    /** Sends the queued requests, in order, once a connection is up. */
    flush() {
        const queued = this.queue;
        this.queue = [];
        for (let i = 0; i < queued.length; i++) {
            const q = queued[i];
            if (this.trySend(q.frame, q)) {
                q.timer.cancel();
            }
            else {
                // The connection went down again while flushing: keep the rest waiting.
                this.queue = queued.slice(i).concat(this.queue);
                return;
            }
        }
    }
    /** The connection dropped: requests sent on it will never be answered. */
    connectionLost() {
        const inflight = [...this.inflight.values()];
        this.inflight.clear();
        for (const pending of inflight)
            pending.reject(new ConnectionLostError());
    }
    /** Fails every request, sent or queued (the client is shutting down). */
    failAll(error) {
        const queued = this.queue;
        this.queue = [];
        for (const q of queued) {
            q.timer.cancel();
            q.reject(error);
        }
        const inflight = [...this.inflight.values()];
        this.inflight.clear();
        for (const pending of inflight)
            pending.reject(error);
    }
    trySend(frame, pending) {
        const id = this.nextId++;
        this.inflight.set(id, pending);
        if (this.transmit({ ...frame, id }))
            return true;
        this.inflight.delete(id);
        return false;
    }
}
