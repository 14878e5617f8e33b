/**
 * `TabLeader`: the leader tab's side of `shareAcrossTabs`: it owns the real connection
 * (a `Connection` of its own, with the leader tab's options) and serves every
 * tab of the origin, itself included, as a small server would serve
 * connections.
 *
 * Each tab has a virtual connection to the leader and keeps its own desired
 * state (reference-counted per component, lingering on release) with its own
 * `Connection`. The leader keeps, per tab, what that tab asked for on its
 * virtual connection (subscriptions with the occupancy flag, entries,
 * watches, status) and holds one reference per tab in the real connection's
 * synchroniser, so the server sees the union: a channel is unsubscribed when
 * the last tab lets go, the user is away only when every tab is away. Replies
 * go to the asking tab with its own request id, after the frames the request
 * produced; server frames go to the tabs they concern (member frames and
 * messages to the channel's subscribers, occupancy to those that asked,
 * presence filtered to each tab's watches). A tab subscribing to a channel
 * the leader already has gets a snapshot made from the leader's view. A
 * channel the server takes away (`unsubscribed`) ends for every tab that had
 * it.
 *
 * When the real connection drops, every virtual one does (`lost`), and comes
 * back with it (`welcome` with `resumed: true`: the leader restored the union).
 * A tab that closes without detaching (found by its Web Lock, or by missed
 * heartbeats without Web Locks) keeps its share for the server's grace window,
 * like a dropped connection, so a reload shows nobody a leave.
 */
import { Connection } from "../connection.js";
import { PresenceError, toPresenceError } from "../errors.js";
import { Timer } from "../runtime.js";
import { SessionStore } from "../session-store.js";
import { ALIVE_MS, abortController, tabLockName } from "./messages.js";
/** Without Web Locks, after how long without an `alive` a follower is gone. */
export const TAB_TIMEOUT_MS = 5000;
const DEFAULT_GRACE_MS = 15000;
const done = Promise.resolve();
export class TabLeader {
    constructor(options, 
    /** The id of the leader's own tab. */
    id, hooks, 
    /** Whether the real connection may resume a session kept in this tab's storage. */
    resume) {
        this.options = options;
        this.id = id;
        this.hooks = hooks;
        this.tabs = new Map();
        /** Tabs gone without detaching, holding their share until their grace ends. */
        this.ghosts = new Set();
        this.graceMs = DEFAULT_GRACE_MS;
        this.up = false;
        this.closed = false;
        this.conns = 0;
        // A session this tab kept from an earlier time it led is not the one the
        // other tabs' state lives on: start a fresh connection.
        if (!resume)
            new SessionStore(options.url, options.storage).clear();
        this.livenessTimer = new Timer(options.clock);
        this.upstream = new Connection(
        // No automatic away of its own (the tabs report theirs); the document still
        // makes a pending reconnect try at once when the page becomes visible.
        { ...options, awayAfterHiddenMs: null, shareAcrossTabs: null }, () => { }, {
            observer: {
                frame: (frame) => this.forward(frame),
                welcomed: (welcome) => this.connected(welcome),
                lost: () => this.disconnected(),
                // The tab that asked gets these as its reply.
                syncError: () => { },
            },
        });
        this.upstream.events.on("error", (error) => {
            if (!this.closed)
                this.hooks.post({ kind: "error", code: error.code, message: error.message });
        });
        this.upstream.events.on("kicked", ({ code, reason }) => {
            if (this.closed)
                return;
            this.shutdown();
            this.hooks.post({ kind: "kicked", code, reason });
        });
        if (!options.locks)
            this.checkLiveness();
    }
    /** Handles a message a tab sent to the leader. */
    receive(message) {
        if (this.closed)
            return;
        const tab = this.tabs.get(message.from);
        if (tab)
            tab.lastSeen = this.options.clock.now();
        switch (message.kind) {
            case "attach":
                this.attach(message.from);
                break;
            case "detach":
                this.detach(message.from);
                break;
            case "alive":
                if (!tab)
                    this.hooks.post({ kind: "reset", to: message.from });
                break;
            case "req":
                if (!tab)
                    this.hooks.post({ kind: "reset", to: message.from });
                else if (tab.conn !== null && tab.conn === message.conn)
                    this.request(tab, message.frame);
                // Otherwise a request of a virtual connection that is gone: the tab re-sends it.
                break;
            default:
                break;
        }
    }
    /** Closes the real connection without `bye` (another tab takes over within the grace window). */
    close() {
        if (this.closed)
            return;
        this.shutdown();
        this.upstream.close();
    }
    /** Ends the user's presence: `bye` on the real connection, then close. */
    logout() {
        if (this.closed)
            return;
        this.shutdown();
        this.upstream.logout();
    }
    // ------------------------------------------------------------------ tabs
    attach(id) {
        const old = this.tabs.get(id);
        if (old)
            this.retire(old, this.options.releaseDelayMs);
        const tab = {
            id,
            conn: null,
            welcomed: false,
            channels: new Map(),
            watches: new Set(),
            status: "online",
            lastSeen: this.options.clock.now(),
            stopWatching: () => { },
            expiry: null,
        };
        this.tabs.set(id, tab);
        this.watchLife(tab);
        if (this.up)
            this.welcome(tab);
        void this.syncStatus();
    }
    detach(id) {
        const tab = this.tabs.get(id) ?? [...this.ghosts].find((ghost) => ghost.id === id);
        if (tab)
            this.drop(tab);
    }
    /** Finds out when a tab is gone without detaching: its lock is released, or it stops saying it is alive. */
    watchLife(tab) {
        const { locks } = this.options;
        if (tab.id === this.id || !locks)
            return;
        const controller = abortController();
        let watching = true;
        tab.stopWatching = () => {
            watching = false;
            controller?.abort();
        };
        locks
            .request(tabLockName(this.options.url, tab.id), controller ? { signal: controller.signal } : {}, () => {
            if (watching)
                this.vanished(tab);
        })
            .catch(() => { });
    }
    checkLiveness() {
        this.livenessTimer.start(ALIVE_MS, () => {
            const now = this.options.clock.now();
            for (const tab of [...this.tabs.values()]) {
                if (tab.id !== this.id && now - tab.lastSeen > TAB_TIMEOUT_MS)
                    this.vanished(tab);
            }
            this.checkLiveness();
        });
    }
    /** A tab is gone without detaching: its share stays for the grace window, like a dropped connection. */
    vanished(tab) {
        if (this.tabs.get(tab.id) === tab)
            this.retire(tab, this.graceMs);
    }
    retire(tab, delayMs) {
        this.tabs.delete(tab.id);
        tab.conn = null;
        tab.stopWatching();
        this.ghosts.add(tab);
        tab.expiry = new Timer(this.options.clock);
        tab.expiry.start(delayMs, () => this.drop(tab));
    }
    /** Gives back everything a tab holds, at once. */
    drop(tab) {
        tab.stopWatching();
        tab.expiry?.cancel();
        if (this.tabs.get(tab.id) === tab)
            this.tabs.delete(tab.id);
        this.ghosts.delete(tab);
        const { sync } = this.upstream;
        for (const [channel, state] of tab.channels) {
            void sync.drop(channel, state.entered ? ["subscription", "entry"] : ["subscription"], 0);
        }
        tab.channels.clear();
        if (tab.watches.size > 0)
            void sync.unwatch([...tab.watches], 0);
        tab.watches.clear();
        void this.syncStatus();
    }
    welcome(tab) {
        tab.conn = `${this.id}/${++this.conns}`;
        const resumed = tab.welcomed;
        tab.welcomed = true;
        this.hooks.post({
            kind: "welcome",
            to: tab.id,
            conn: tab.conn,
            user: this.upstream.user ?? null,
            resumed,
            grace_ms: this.graceMs,
        });
    }
    // ------------------------------------------------------------------ the real connection
    connected(welcome) {
        if (this.closed)
            return;
        this.up = true;
        if (typeof welcome.grace_ms === "number" && welcome.grace_ms >= 0)
            this.graceMs = welcome.grace_ms;
        for (const tab of this.tabs.values())
            this.welcome(tab);
    }
    disconnected() {
        if (this.closed)
            return;
        this.up = false;
        for (const tab of this.tabs.values())
            tab.conn = null;
        this.hooks.post({ kind: "lost" });
    }
    shutdown() {
        this.closed = true;
        this.up = false;
        this.livenessTimer.cancel();
        for (const tab of [...this.tabs.values(), ...this.ghosts]) {
            tab.stopWatching();
            tab.expiry?.cancel();
        }
        this.tabs.clear();
        this.ghosts.clear();
    }
    /** Sends a server frame to the tabs it concerns. */
    forward(frame) {
        if (this.closed)
            return;
        switch (frame.t) {
            case "sync":
            case "join":
            case "update":
            case "leave":
            case "diff":
            case "message":
                this.sendFrame(this.subscribers(frame.channel, false), frame);
                break;
            case "occupancy":
                this.sendFrame(this.subscribers(frame.channel, true), frame);
                break;
            case "unsubscribed": {
                // The real connection has forgotten the channel, every tab's share in it included.
                const to = this.subscribers(frame.channel, false);
                for (const tab of [...this.tabs.values(), ...this.ghosts])
                    tab.channels.delete(frame.channel);
                this.sendFrame(to, frame);
                break;
            }
            case "presence":
                for (const tab of this.tabs.values()) {
                    if (tab.conn !== null)
                        this.sendPresence(tab, Object.keys(frame.users), (user) => frame.users[user]);
                }
                break;
            default:
                break;
        }
    }
    subscribers(channel, occupancy) {
        const ids = [];
        for (const tab of this.tabs.values()) {
            const state = tab.channels.get(channel);
            if (tab.conn !== null && state && (!occupancy || state.occupancy))
                ids.push(tab.id);
        }
        return ids;
    }
    sendFrame(to, frame) {
        if (to.length > 0)
            this.hooks.post({ kind: "frame", to, frame });
    }
    sendPresence(tab, users, entry) {
        const picked = {};
        let any = false;
        for (const user of users) {
            const value = entry(user);
            if (value && tab.watches.has(user)) {
                picked[user] = value;
                any = true;
            }
        }
        if (any)
            this.sendFrame([tab.id], { t: "presence", users: picked });
    }
    // ------------------------------------------------------------------ requests of tabs
    request(tab, frame) {
        const { id } = frame;
        const conn = tab.conn;
        let outcome;
        try {
            outcome = this.apply(tab, frame);
        }
        catch (err) {
            outcome = Promise.reject(err);
        }
        outcome.then((ok) => {
            if (id !== undefined)
                this.reply(tab, conn, { ...(ok ?? {}), t: "ok", id });
        }, (err) => {
            const error = toPresenceError(err);
            const reply = { t: "error", code: error.code, message: error.message };
            if (id !== undefined)
                reply.id = id;
            // Like the server: an error without an id still reaches the connection.
            this.reply(tab, conn, reply);
        });
    }
    reply(tab, conn, frame) {
        if (this.closed || conn === null || tab.conn !== conn || this.tabs.get(tab.id) !== tab)
            return;
        this.sendFrame([tab.id], frame);
    }
    /** Applies a tab's request to its share of the union; resolves once the server has what the union needs. */
    apply(tab, frame) {
        const { sync } = this.upstream;
        switch (frame.t) {
            case "subscribe": {
                const channel = requireChannel(frame.channel);
                const occupancy = frame.occupancy === true;
                let state = tab.channels.get(channel);
                if (!state) {
                    state = { occupancy, entered: false };
                    tab.channels.set(channel, state);
                    sync.holdSubscription(channel, occupancy);
                }
                else if (occupancy && !state.occupancy) {
                    state.occupancy = true;
                    sync.requestOccupancy(channel);
                }
                this.sendSnapshot(tab, channel);
                return sync.syncChannel(channel);
            }
            case "enter": {
                const channel = requireChannel(frame.channel);
                let state = tab.channels.get(channel);
                if (!state) {
                    state = { occupancy: false, entered: false };
                    tab.channels.set(channel, state);
                    sync.holdSubscription(channel, false);
                }
                if (!state.entered) {
                    state.entered = true;
                    sync.holdEntry(channel);
                }
                if (frame.data !== undefined)
                    sync.setData(channel, frame.data);
                this.sendSnapshot(tab, channel);
                return sync.syncChannel(channel);
            }
            case "update": {
                const channel = requireChannel(frame.channel);
                if (!tab.channels.get(channel)?.entered)
                    return notMember(channel);
                sync.setData(channel, frame.data);
                return sync.syncChannel(channel);
            }
            case "leave": {
                const channel = requireChannel(frame.channel);
                const state = tab.channels.get(channel);
                if (!state?.entered)
                    return notMember(channel);
                state.entered = false;
                return sync.drop(channel, ["entry"], 0);
            }
            case "unsubscribe": {
                const channel = requireChannel(frame.channel);
                const state = tab.channels.get(channel);
                if (!state)
                    return done;
                tab.channels.delete(channel);
                const kinds = state.entered ? ["subscription", "entry"] : ["subscription"];
                return sync.drop(channel, kinds, 0);
            }
            case "watch": {
                const users = requireUsers(frame.users);
                const added = users.filter((user) => !tab.watches.has(user));
                for (const user of added)
                    tab.watches.add(user);
                // Statuses the leader already has; the others come with the server's answer.
                this.sendPresence(tab, users, (user) => this.upstream.status(user));
                return sync.watch(added);
            }
            case "unwatch": {
                const users = requireUsers(frame.users).filter((user) => tab.watches.delete(user));
                return sync.unwatch(users, 0);
            }
            case "status": {
                if (frame.status !== "online" && frame.status !== "away") {
                    return Promise.reject(new PresenceError("bad_request", "status must be online or away"));
                }
                if (this.options.token === null)
                    return sync.setStatus(frame.status);
                tab.status = frame.status;
                return this.syncStatus();
            }
            case "publish": {
                const channel = requireChannel(frame.channel);
                const { data } = frame;
                return this.upstream.request({ t: "publish", channel, data }).then((ok) => {
                    // The server does not echo to the publishing connection, but the other tabs are other subscribers.
                    const others = this.subscribers(channel, false).filter((id) => id !== tab.id);
                    this.sendFrame(others, { t: "message", channel, from: this.upstream.user ?? null, data });
                    return ok;
                });
            }
            case "ping":
            case "refresh":
                // The leader's own connection pings and refreshes its token.
                return done;
            default:
                return Promise.reject(new PresenceError("bad_request", `unsupported frame type ${frame.t}`));
        }
    }
    /** A snapshot of the channel from the leader's view, for a tab that (re)subscribes to a channel the leader has. */
    sendSnapshot(tab, channel) {
        const view = this.upstream.peekView(channel);
        const snapshot = view?.snapshot();
        if (!view || !snapshot)
            return; // the server's snapshot is on its way, and will be forwarded
        this.sendFrame([tab.id], { t: "sync", channel, seq: snapshot.seq, members: snapshot.members, more: false });
        const occupancy = view.occupancy();
        if (occupancy && tab.channels.get(channel)?.occupancy) {
            this.sendFrame([tab.id], { t: "occupancy", channel, ...occupancy });
        }
    }
    /** The user is away when every tab (gone ones inside their grace included) is. */
    syncStatus() {
        if (this.closed || this.options.token === null)
            return done;
        const all = [...this.tabs.values(), ...this.ghosts];
        if (all.length === 0)
            return done;
        const away = all.every((tab) => tab.status === "away");
        return this.upstream.sync.setStatus(away ? "away" : "online");
    }
}
function requireChannel(channel) {
    if (typeof channel !== "string")
        throw new PresenceError("bad_request", "channel must be a string");
    return channel;
}
function requireUsers(users) {
    if (!Array.isArray(users) || !users.every((user) => typeof user === "string")) {
        throw new PresenceError("bad_request", "users must be an array of strings");
    }
    return users;
}
function notMember(channel) {
    return Promise.reject(new PresenceError("not_member", `not entered in ${channel}`));
}
