/**
 * The client's desired state and its synchronisation with the server.
 *
 * The application says what it wants (subscriptions with their occupancy
 * flag, entered channels with their latest data, watched users, its status),
 * reference-counted across the components that ask. This module turns changes
 * of that wish into frames while connected, remembers what could not be sent
 * (or whose reply was lost) while disconnected, and on the next `welcome`
 * re-sends either those changes (`resumed: true`: the server restored the
 * rest) or everything (`resumed: false`).
 *
 * When the server ends a channel itself (`unsubscribed`: the connection may
 * no longer see it), every reference to the channel is forgotten, so that no
 * reconnect or resume asks for it again; the application's next `subscribe`
 * or `enter` does.
 *
 * The promise of an operation resolves once the server confirmed it, possibly
 * on a later connection; it rejects with the server's error, or with
 * `unavailable` when no connection came in time (the wish is kept and applied
 * when one does). Server errors are also emitted, so these promises never
 * count as unhandled rejections.
 */
import { NOT_SUBSCRIBED, UNKNOWN, planChannel, sameJson } from "./channel-plan.js";
import { ConnectionLostError, PresenceError } from "./errors.js";
import { MAX_USERS_PER_WATCH, } from "./protocol.js";
import { RefSet } from "./refset.js";
import { Timer } from "./runtime.js";
const done = Promise.resolve();
export class StateSync {
    constructor(hooks, options) {
        this.hooks = hooks;
        this.options = options;
        this.occupancy = new Set();
        /** Latest member data asked for, per entered channel. */
        this.data = new Map();
        /** Latest member data the server accepted, to fall back to when new data is refused. */
        this.acceptedData = new Map();
        /** What the frames sent on this connection asked for; UNKNOWN after a lost or failed request. */
        this.sent = new Map();
        this.sentStatus = "online";
        this.manualStatus = "online";
        this.autoAway = false;
        /** Requests on this connection not yet answered, so that a drop marks their targets at once. */
        this.unacked = new Counter();
        this.unackedWatches = new Counter();
        this.unackedStatus = 0;
        /** Changes to re-send on the next connection even if it resumes. */
        this.dirtyChannels = new Set();
        this.dirtyWatches = new Set();
        this.statusDirty = false;
        this.inflight = new Map();
        this.waiters = new Map();
        /** Channels the server ended (`unsubscribed`): how many times, and the last reason. */
        this.ended = new Map();
        /** Set once the client has shut down: every operation fails with it. */
        this.closedWith = null;
        const { clock } = options;
        this.channelRefs = new RefSet(clock, (keys) => {
            for (const channel of channelsOf(keys))
                void this.syncChannel(channel);
        });
        this.watches = new RefSet(clock, (users) => void quiet(this.syncWatches("unwatch", users)));
    }
    // ------------------------------------------------------------------ channels
    isSubscribed(channel) {
        return this.channelRefs.has(channelKey("subscription", channel)) || this.isEntered(channel);
    }
    isEntered(channel) {
        return this.channelRefs.has(channelKey("entry", channel));
    }
    /** Takes a subscription reference (and asks for occupancy if `occupancy`). */
    holdSubscription(channel, occupancy) {
        this.channelRefs.acquire([channelKey("subscription", channel)]);
        if (occupancy)
            this.occupancy.add(channel);
    }
    /** Adds occupancy updates to a subscription already held. */
    requestOccupancy(channel) {
        this.occupancy.add(channel);
    }
    holdEntry(channel) {
        this.channelRefs.acquire([channelKey("entry", channel)]);
    }
    setData(channel, data) {
        this.data.set(channel, data);
    }
    /** Whether `data` is the member data already wanted for the channel (compared by value). */
    hasData(channel, data) {
        const current = this.data.get(channel);
        return current !== undefined && (current === data || JSON.stringify(current) === JSON.stringify(data));
    }
    /**
     * Drops references taken with `holdSubscription`/`holdEntry`. With a delay
     * they linger first and the channel is synced when the linger ends;
     * without, at once.
     */
    drop(channel, kinds, delayMs) {
        const keys = kinds.map((kind) => channelKey(kind, channel));
        if (this.channelRefs.release(keys, delayMs).length > 0)
            return this.syncChannel(channel);
        return this.inflight.get(`channel:${channel}`) ?? done;
    }
    /**
     * The server ended the channel's subscription and membership
     * (`unsubscribed`): forgets every reference to it (the handles that held
     * one find out through `endings`), its data and occupancy flag, and what
     * was sent, so that nothing asks for it again until the application does.
     * False for a channel not held (a late frame).
     */
    end(channel, reason) {
        if (!this.isSubscribed(channel))
            return false;
        this.channelRefs.forget([channelKey("subscription", channel), channelKey("entry", channel)]);
        this.ended.set(channel, { count: this.endings(channel) + 1, reason });
        // The server holds nothing of it any more; replies still due change nothing.
        this.sent.delete(channel);
        this.unacked.delete(channel);
        this.dirtyChannels.delete(channel);
        this.currentIntent(channel);
        return true;
    }
    /** How many times the server has ended the channel (see `end`). */
    endings(channel) {
        return this.ended.get(channel)?.count ?? 0;
    }
    /** The reason of the channel's last end, if it had one. */
    endReason(channel) {
        return this.ended.get(channel)?.reason ?? null;
    }
    /** Brings the server in line with what is wanted for the channel. */
    syncChannel(channel) {
        if (this.closedWith)
            return quiet(Promise.reject(this.closedWith));
        const intent = this.currentIntent(channel);
        if (!this.hooks.connected()) {
            this.dirtyChannels.add(channel);
            return quiet(this.wait(`channel:${channel}`));
        }
        const from = this.sent.has(channel) ? this.sent.get(channel) : NOT_SUBSCRIBED;
        return quiet(this.transmitChannel(channel, from, intent));
    }
    /** Asks for a fresh snapshot after a `seq` gap. */
    resubscribe(channel) {
        if (!this.isSubscribed(channel) || !this.hooks.connected())
            return;
        const frame = this.occupancy.has(channel)
            ? { t: "subscribe", channel, occupancy: true }
            : { t: "subscribe", channel };
        // A lost reply needs nothing: the next welcome brings a fresh snapshot anyway.
        this.hooks.send(frame).catch((err) => {
            if (!(err instanceof ConnectionLostError))
                this.hooks.error(err);
        });
    }
    /** What is wanted for the channel now; also forgets what no longer applies to it. */
    currentIntent(channel) {
        const subscribed = this.isSubscribed(channel);
        const entered = this.isEntered(channel);
        if (!entered) {
            this.data.delete(channel);
            this.acceptedData.delete(channel);
        }
        if (!subscribed) {
            this.occupancy.delete(channel);
            this.hooks.channelDropped(channel);
        }
        return {
            subscribed,
            entered,
            occupancy: this.occupancy.has(channel),
            data: this.data.get(channel),
        };
    }
    transmitChannel(channel, from, to) {
        const target = `channel:${channel}`;
        const frames = planChannel(channel, from, to);
        if (to.subscribed)
            this.sent.set(channel, to);
        else
            this.sent.delete(channel);
        if (frames.length === 0)
            return this.inflight.get(target) ?? done;
        const replies = frames.map((frame) => {
            this.unacked.add(channel);
            return this.hooks.send(frame).then(() => {
                this.unacked.remove(channel);
                if ((frame.t === "enter" || frame.t === "update") && frame.data) {
                    this.acceptedData.set(channel, frame.data);
                }
            }, (err) => {
                this.unacked.remove(channel);
                return this.channelFailed(channel, frame, err);
            });
        });
        return this.track(target, Promise.all(replies).then(() => undefined));
    }
    channelFailed(channel, frame, error) {
        if (frame.t === "leave" && error.code === "not_member")
            return done;
        if (!(error instanceof ConnectionLostError)) {
            // A failed request changes nothing on the server, but which of our frames did is unclear.
            if (this.sent.has(channel))
                this.sent.set(channel, UNKNOWN);
            const refused = (frame.t === "enter" || frame.t === "update") && frame.data;
            if (refused && sameJson(this.data.get(channel), frame.data)) {
                const accepted = this.acceptedData.get(channel);
                if (accepted)
                    this.data.set(channel, accepted);
                else
                    this.data.delete(channel);
            }
        }
        return this.failed(`channel:${channel}`, error);
    }
    // ------------------------------------------------------------------ watches
    isWatched(user) {
        return this.watches.has(user);
    }
    watch(users) {
        return quiet(this.syncWatches("watch", this.watches.acquire(users)));
    }
    unwatch(users, delayMs) {
        return quiet(this.syncWatches("unwatch", this.watches.release(users, delayMs)));
    }
    syncWatches(kind, users) {
        if (this.closedWith)
            return Promise.reject(this.closedWith);
        if (kind === "unwatch" && users.length > 0)
            this.hooks.watchesDropped(users);
        if (users.length === 0)
            return this.inflight.get("watch") ?? done;
        if (!this.hooks.connected()) {
            for (const user of users)
                this.dirtyWatches.add(user);
            return this.wait("watch");
        }
        return this.track("watch", this.transmitWatches(kind, users));
    }
    transmitWatches(kind, users) {
        const replies = [];
        for (let i = 0; i < users.length; i += MAX_USERS_PER_WATCH) {
            const chunk = users.slice(i, i + MAX_USERS_PER_WATCH);
            for (const user of chunk)
                this.unackedWatches.add(user);
            const settled = () => {
                for (const user of chunk)
                    this.unackedWatches.remove(user);
            };
            replies.push(this.hooks.send({ t: kind, users: chunk }).then(settled, (err) => {
                settled();
                return this.failed("watch", err);
            }));
        }
        return Promise.all(replies).then(() => undefined);
    }
    // ------------------------------------------------------------------ status
    get status() {
        return this.manualStatus === "away" || this.autoAway ? "away" : "online";
    }
    setStatus(status) {
        if (this.options.guest) {
            return quiet(Promise.reject(new PresenceError("forbidden", "guests have no status of their own")));
        }
        this.manualStatus = status;
        return quiet(this.syncStatus());
    }
    /** Away because the page has been hidden for a while (see the client's `awayAfterHiddenMs`). */
    setAutoAway(away) {
        this.autoAway = away;
        return quiet(this.syncStatus());
    }
    syncStatus() {
        if (this.closedWith)
            return Promise.reject(this.closedWith);
        if (this.options.guest)
            return done;
        if (!this.hooks.connected()) {
            this.statusDirty = true;
            return this.wait("status");
        }
        return this.transmitStatus();
    }
    transmitStatus() {
        const status = this.status;
        if (status === this.sentStatus)
            return this.inflight.get("status") ?? done;
        this.sentStatus = status;
        this.unackedStatus += 1;
        const reply = this.hooks.send({ t: "status", status }).then(() => {
            this.unackedStatus -= 1;
        }, (err) => {
            this.unackedStatus -= 1;
            if (!(err instanceof ConnectionLostError))
                this.sentStatus = UNKNOWN;
            return this.failed("status", err);
        });
        return this.track("status", reply);
    }
    // ------------------------------------------------------------------ connection life
    /** The connection dropped: whatever had no reply yet must be re-sent on the next one. */
    connectionLost() {
        for (const channel of this.unacked.keys()) {
            this.dirtyChannels.add(channel);
            this.sent.set(channel, UNKNOWN);
        }
        for (const user of this.unackedWatches.keys())
            this.dirtyWatches.add(user);
        if (this.unackedStatus > 0) {
            this.statusDirty = true;
            this.sentStatus = UNKNOWN;
        }
        this.unacked.clear();
        this.unackedWatches.clear();
        this.unackedStatus = 0;
        this.inflight.clear();
    }
    /** A `welcome` arrived. */
    connectionUp(resumed) {
        const channels = new Set(this.dirtyChannels);
        const watchUsers = new Set(this.dirtyWatches);
        let status = this.statusDirty;
        this.dirtyChannels.clear();
        this.dirtyWatches.clear();
        this.statusDirty = false;
        if (!resumed) {
            // A fresh connection: the server holds nothing of ours.
            this.sent.clear();
            this.sentStatus = "online";
            for (const channel of channelsOf(this.channelRefs.keys()))
                channels.add(channel);
            for (const user of this.watches.keys())
                watchUsers.add(user);
            status = true;
        }
        for (const channel of channels) {
            const from = this.sent.has(channel) ? this.sent.get(channel) : NOT_SUBSCRIBED;
            this.settleWaiters(`channel:${channel}`, this.transmitChannel(channel, from, this.currentIntent(channel)));
        }
        const watch = [...watchUsers].filter((user) => this.watches.has(user));
        const unwatch = resumed ? [...watchUsers].filter((user) => !this.watches.has(user)) : [];
        const watchReplies = [];
        if (watch.length > 0)
            watchReplies.push(this.transmitWatches("watch", watch));
        if (unwatch.length > 0)
            watchReplies.push(this.transmitWatches("unwatch", unwatch));
        this.settleWaiters("watch", this.track("watch", Promise.all(watchReplies).then(() => undefined)));
        this.settleWaiters("status", status && !this.options.guest ? this.transmitStatus() : done);
    }
    /** The client is shutting down: fail whatever waits and forget every wish. */
    close(error) {
        this.closedWith = error;
        for (const [target, waiters] of this.waiters) {
            this.waiters.delete(target);
            for (const waiter of waiters) {
                waiter.timer.cancel();
                waiter.reject(error);
            }
        }
        this.channelRefs.clear();
        this.watches.clear();
        this.dirtyChannels.clear();
        this.dirtyWatches.clear();
        this.inflight.clear();
    }
    // ------------------------------------------------------------------ waiting
    failed(target, error) {
        if (error instanceof ConnectionLostError) {
            // connectionLost() has already marked the target for the next connection.
            return this.hooks.connected() ? (this.inflight.get(target) ?? done) : this.wait(target);
        }
        this.hooks.error(error);
        return Promise.reject(error);
    }
    track(target, reply) {
        this.inflight.set(target, reply);
        const forget = () => {
            if (this.inflight.get(target) === reply)
                this.inflight.delete(target);
        };
        reply.then(forget, forget);
        return reply;
    }
    /** Waits for the target to be re-sent on a later connection. */
    wait(target) {
        return new Promise((resolve, reject) => {
            const timer = new Timer(this.options.clock);
            const waiter = { resolve, reject, timer };
            const list = this.waiters.get(target) ?? [];
            list.push(waiter);
            this.waiters.set(target, list);
            timer.start(this.options.waitTimeoutMs, () => {
                const remaining = (this.waiters.get(target) ?? []).filter((w) => w !== waiter);
                if (remaining.length > 0)
                    this.waiters.set(target, remaining);
                else
                    this.waiters.delete(target);
                reject(new PresenceError("unavailable", `not connected within ${this.options.waitTimeoutMs} ms; will apply on reconnect`));
            });
        });
    }
    settleWaiters(target, outcome) {
        const list = this.waiters.get(target);
        if (!list)
            return;
        this.waiters.delete(target);
        for (const waiter of list) {
            waiter.timer.cancel();
            outcome.then(waiter.resolve, waiter.reject);
        }
    }
}
function channelKey(kind, channel) {
    return `${kind === "entry" ? "e" : "s"}:${channel}`;
}
function channelsOf(keys) {
    return new Set(keys.map((key) => key.slice(2)));
}
/** Marks a promise as handled (its errors are also emitted) while callers still see them. */
function quiet(promise) {
    promise.catch(() => { });
    return promise;
}
/** A multiset of keys. */
class Counter {
    constructor() {
        this.counts = new Map();
    }
    add(key) {
        this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    }
    remove(key) {
        const count = (this.counts.get(key) ?? 0) - 1;
        if (count > 0)
            this.counts.set(key, count);
        else
            this.counts.delete(key);
    }
    delete(key) {
        this.counts.delete(key);
    }
    keys() {
        return [...this.counts.keys()];
    }
    clear() {
        this.counts.clear();
    }
}
