import { PresenceError } from "./errors.js";
const NO_MEMBERS = [];
/** What operations of a released client resolve to. */
export function releasedClient() {
    const rejected = Promise.reject(new PresenceError("unavailable", "this client has been released"));
    rejected.catch(() => { });
    return rejected;
}
/**
 * A handle on a channel whose members' data has type `D` (any JSON object
 * type, interfaces included) and whose messages have type `M`. The types are
 * the application's word: the server checks neither.
 */
export class ChannelHandle {
    constructor(owner, name) {
        this.owner = owner;
        this.name = name;
        this.holdsSubscription = false;
        this.holdsEntry = false;
        /** The synchroniser's count of the channel's ends when this handle took what it holds. */
        this.heldAtEnding = 0;
        this.revokedValue = null;
        this.offs = new Set();
    }
    get connection() {
        return this.owner.connection;
    }
    /** Whether this handle holds a subscription (directly or through `enter`). */
    get subscribed() {
        this.catchUp();
        return this.holdsSubscription;
    }
    /** Whether this handle has entered the channel. */
    get entered() {
        this.catchUp();
        return this.holdsEntry;
    }
    /**
     * Why the server took the channel away while this handle held it
     * (`forbidden`: a token refresh or resume with narrower rights, say): its
     * subscription and entry ended, and no reconnect asks for them again.
     * Null otherwise; `subscribe()` or `enter()` asks again and clears it.
     */
    get revoked() {
        this.catchUp();
        return this.revokedValue;
    }
    /** Receive the channel's members (and occupancy when asked). Resolves once the server confirmed. */
    subscribe(options = {}) {
        if (this.owner.released)
            return releasedClient();
        const { sync } = this.connection;
        const occupancy = options.occupancy === true;
        this.askAgain();
        if (!this.holdsSubscription) {
            this.holdsSubscription = true;
            this.owner.track(this);
            sync.holdSubscription(this.name, occupancy);
        }
        else if (occupancy) {
            sync.requestOccupancy(this.name);
        }
        return sync.syncChannel(this.name);
    }
    /**
     * Become a member (implies subscribe). With `data`, sets this user's member
     * data; calling it again with other data updates it.
     */
    enter(data) {
        if (this.owner.released)
            return releasedClient();
        const { sync } = this.connection;
        this.askAgain();
        // New data for a channel already entered is an update, throttled as `update` is.
        const updating = data !== undefined && sync.isEntered(this.name) && this.holdsEntry && !this.sameData(data);
        if (!this.holdsSubscription) {
            this.holdsSubscription = true;
            sync.holdSubscription(this.name, false);
        }
        if (!this.holdsEntry) {
            this.holdsEntry = true;
            sync.holdEntry(this.name);
        }
        this.owner.track(this);
        if (data !== undefined)
            sync.setData(this.name, data);
        return updating ? this.throttled() : sync.syncChannel(this.name);
    }
    /**
     * Replaces this user's member data. The channel must have been entered (by
     * any handle). Throttled per channel (the client's `updateThrottleMs`,
     * default 100 ms): within the interval after an update only the latest
     * data is sent, when it ends; the promise resolves once the server
     * confirmed the data that went out.
     */
    update(data) {
        const { sync } = this.connection;
        if (!sync.isEntered(this.name)) {
            const revoked = this.revoked;
            return Promise.reject(revoked ? revokedError(this.name, revoked) : new PresenceError("not_member", `not entered in ${this.name}`));
        }
        // The same data again sends nothing: no need to wait for the throttle.
        const same = this.sameData(data);
        sync.setData(this.name, data);
        return same ? sync.syncChannel(this.name) : this.throttled();
    }
    /** The channel's latest data through the update throttle; rejects if the server took the channel away meanwhile. */
    throttled() {
        const { sync, updates } = this.connection;
        const endings = sync.endings(this.name);
        const sent = updates.schedule(this.name).then(() => {
            const reason = sync.endReason(this.name);
            if (sync.endings(this.name) !== endings && reason)
                throw revokedError(this.name, reason);
        });
        // Like the synchroniser's promises: safe to fire and forget.
        sent.catch(() => { });
        return sent;
    }
    /** The server ended the channel since this handle took what it holds: it holds nothing any more. */
    catchUp() {
        if (!this.holdsSubscription && !this.holdsEntry)
            return;
        const { sync } = this.connection;
        if (sync.endings(this.name) === this.heldAtEnding)
            return;
        this.holdsSubscription = false;
        this.holdsEntry = false;
        this.revokedValue = sync.endReason(this.name);
    }
    /** Before `subscribe`/`enter`: a revoked channel is asked for again, from the current count of ends. */
    askAgain() {
        this.catchUp();
        this.revokedValue = null;
        if (!this.holdsSubscription)
            this.heldAtEnding = this.connection.sync.endings(this.name);
    }
    sameData(data) {
        return this.connection.sync.hasData(this.name, data);
    }
    /**
     * Drops this handle's entry at once (the server sees a leave if no other
     * handle of the page has entered). The handle stays subscribed.
     */
    leave() {
        this.catchUp();
        if (!this.holdsEntry)
            return Promise.resolve();
        this.holdsEntry = false;
        return this.connection.sync.drop(this.name, ["entry"], 0);
    }
    /** Drops this handle's subscription and entry at once. Listeners stay. */
    unsubscribe() {
        return this.dropReferences(0);
    }
    /** Sends an ephemeral message to the channel's other subscribers. */
    async publish(data) {
        await this.connection.request({ t: "publish", channel: this.name, data: data });
    }
    /** Current members, as a stable array (the same array until the member set changes). */
    members() {
        return (this.connection.peekView(this.name)?.memberList() ?? NO_MEMBERS);
    }
    /** Latest occupancy, if subscribed with `occupancy: true` and received. */
    occupancy() {
        return this.connection.peekView(this.name)?.occupancy() ?? null;
    }
    on(event, listener) {
        if (this.owner.released)
            return () => { };
        const off = this.connection.view(this.name).events.on(event, listener);
        this.owner.track(this);
        const remove = () => {
            if (!this.offs.delete(remove))
                return;
            off();
            this.connection.releaseView(this.name);
        };
        this.offs.add(remove);
        return remove;
    }
    /**
     * Lets go of everything this handle holds: its listeners at once, its
     * subscription and entry after the client's release delay, so that a quick
     * re-acquire (a remount) changes nothing on the server. The handle can be
     * used again afterwards.
     */
    release() {
        for (const off of [...this.offs])
            off();
        void this.dropReferences(this.connection.options.releaseDelayMs);
        this.owner.untrack(this);
    }
    dropReferences(delayMs) {
        this.catchUp();
        const kinds = [];
        if (this.holdsSubscription)
            kinds.push("subscription");
        if (this.holdsEntry)
            kinds.push("entry");
        this.holdsEntry = false;
        this.holdsSubscription = false;
        if (kinds.length === 0)
            return Promise.resolve();
        return this.connection.sync.drop(this.name, kinds, delayMs);
    }
}
/** What a handle's operations reject with once the server took the channel away. */
export function revokedError(channel, reason) {
    return new PresenceError(reason, `the server ended the subscription to ${channel} (${reason})`);
}
