/**
 * One connection to one server URL, shared by every client created for that
 * URL in the page: it wires the link (socket life), the request tracker,
 * the desired-state synchroniser and the per-channel views together, routes
 * incoming frames, and closes when its last user lets go (after the release
 * delay) or on logout.
 *
 * With `shareAcrossTabs` the link is one to the leader tab (`src/share/`)
 * instead of a socket, and the leader tab's `TabLeader` runs a connection of
 * its own, with an observer, for the real socket.
 */
import { AwayTracker } from "./away.js";
import { ChannelView } from "./channel-view.js";
import { Emitter } from "./emitter.js";
import { PresenceError, errorFromFrame } from "./errors.js";
import { Transport } from "./link/transport.js";
import { RequestTracker } from "./requests.js";
import { Timer } from "./runtime.js";
import { SessionStore } from "./session-store.js";
import { StateSync } from "./state-sync.js";
import { UpdateThrottle } from "./throttle.js";
import { TokenRefresher, isProvider } from "./token.js";
export class Connection {
    constructor(options, 
    /** Called once the connection is closed for good. */
    onClosed, extras = {}) {
        this.options = options;
        this.onClosed = onClosed;
        this.events = new Emitter();
        this.views = new Map();
        this.statuses = new Map();
        this.users = 0;
        this.closedValue = false;
        this.userId = undefined;
        const { clock } = options;
        this.observer = extras.observer ?? {};
        this.lingerTimer = new Timer(clock);
        this.sessions = new SessionStore(options.url, options.storage);
        this.link = extras.link ?? new Transport({ ...options, sessions: this.sessions });
        this.requests = new RequestTracker((frame) => this.link.send(frame), clock, options.requestTimeoutMs);
        this.sync = new StateSync({
            connected: () => this.link.isConnected,
            send: (frame) => this.requests.send(frame),
            error: (error) => {
                if (this.observer.syncError)
                    this.observer.syncError(error);
                else
                    this.events.emit("error", error);
            },
            channelDropped: (channel) => this.dropView(channel),
            watchesDropped: (users) => {
                for (const user of users)
                    this.statuses.delete(user);
            },
        }, { clock, waitTimeoutMs: options.requestTimeoutMs, guest: options.token === null });
        this.updates = new UpdateThrottle(clock, options.updateThrottleMs, (channel) => this.sync.syncChannel(channel));
        this.refresher = new TokenRefresher(isProvider(options.token) ? options.token : null, clock, options.refreshBeforeExpiryMs, {
            send: (token) => this.requests.send({ t: "refresh", token }),
            accepted: (token) => this.link.tokenRefreshed(token),
            offline: () => this.link.offline,
            error: (error) => this.events.emit("error", error),
        });
        this.away = new AwayTracker(options.document, clock, options.awayAfterHiddenMs, (away) => {
            void this.ownStatusChange(() => this.sync.setAutoAway(away));
        });
        this.wireLink();
        this.link.start();
        this.away.start();
    }
    get state() {
        return this.link.state;
    }
    get closed() {
        return this.closedValue;
    }
    /** The user id from the last `welcome` (null for a guest, undefined before the first). */
    get user() {
        return this.userId;
    }
    // ------------------------------------------------------------------ users of the connection
    acquire() {
        this.users += 1;
        this.lingerTimer.cancel();
    }
    /** One user fewer; the last one's leaving closes the socket after the release delay (no `bye`). */
    release() {
        this.users = Math.max(0, this.users - 1);
        if (this.users > 0 || this.closedValue)
            return;
        this.lingerTimer.start(this.options.releaseDelayMs, () => {
            if (this.users === 0)
                this.shutdown(new PresenceError("unavailable", "client released"));
        });
    }
    /** Ends this user's presence at once: `bye`, then close. The resume token is forgotten. */
    logout() {
        if (this.closedValue)
            return;
        this.link.send({ t: "bye" });
        this.sessions.clear();
        this.shutdown(new PresenceError("unavailable", "logged out"));
    }
    /** Closes at once without `bye` (the server keeps the user for its grace window). */
    close(error = new PresenceError("unavailable", "client closed")) {
        this.shutdown(error);
    }
    // ------------------------------------------------------------------ requests and views
    /** A request outside the desired state (publish): queued while disconnected. */
    request(frame) {
        if (this.closedValue)
            return Promise.reject(new PresenceError("unavailable", "client is closed"));
        return this.requests.request(frame);
    }
    view(channel) {
        let view = this.views.get(channel);
        if (!view) {
            view = new ChannelView();
            this.views.set(channel, view);
        }
        return view;
    }
    peekView(channel) {
        return this.views.get(channel);
    }
    /** Forgets a channel's view when nothing subscribes to it or listens to it. */
    releaseView(channel) {
        const view = this.views.get(channel);
        if (view && view.events.size === 0 && !this.sync.isSubscribed(channel))
            this.views.delete(channel);
    }
    status(user) {
        return this.statuses.get(user);
    }
    /** Sets the status asked for; emits `ownStatus` if that changes the status. */
    setOwnStatus(status) {
        return this.ownStatusChange(() => this.sync.setStatus(status));
    }
    ownStatusChange(change) {
        const before = this.sync.status;
        const done = change();
        if (this.sync.status !== before)
            this.events.emit("ownStatus", this.sync.status);
        return done;
    }
    // ------------------------------------------------------------------ internals
    wireLink() {
        const { events } = this.link;
        events.on("state", (state) => this.events.emit("state", state));
        events.on("error", (error) => this.events.emit("error", error));
        events.on("welcome", (welcome) => this.welcomed(welcome));
        events.on("frame", (frame) => this.route(frame));
        events.on("lost", () => this.lost());
        events.on("kicked", (info) => {
            this.shutdown(new PresenceError("unavailable", "kicked by the server"));
            this.events.emit("kicked", info);
        });
        events.on("ended", (error) => {
            this.sessions.clear();
            this.shutdown(error);
        });
    }
    welcomed(welcome) {
        this.userId = welcome.user;
        this.sync.connectionUp(welcome.resumed);
        this.requests.flush();
        this.refresher.schedule(this.link.currentToken);
        this.observer.welcomed?.(welcome);
    }
    lost() {
        this.refresher.cancel();
        this.requests.connectionLost();
        this.sync.connectionLost();
        for (const view of this.views.values())
            view.suspend();
        this.observer.lost?.();
    }
    route(frame) {
        switch (frame.t) {
            case "ok":
                this.requests.settle(frame);
                break;
            case "error":
                if (!this.requests.settle(frame)) {
                    this.events.emit("error", errorFromFrame(frame));
                }
                break;
            case "sync":
                this.subscribedView(frame.channel)?.applySync(frame);
                break;
            case "join":
            case "update":
            case "leave":
            case "diff":
                if (this.subscribedView(frame.channel)?.applyEvent(frame) === "gap") {
                    this.sync.resubscribe(frame.channel);
                }
                break;
            case "occupancy":
                this.subscribedView(frame.channel)?.applyOccupancy(frame);
                break;
            case "message":
                this.subscribedView(frame.channel)?.events.emit("message", { from: frame.from, data: frame.data });
                break;
            case "presence":
                this.applyPresence(frame.users);
                break;
            case "unsubscribed":
                this.channelEnded(frame.channel, frame.reason);
                break;
            default:
                break;
        }
        this.observer.frame?.(frame);
    }
    /** The view of a channel the client wants; frames for other channels are late and ignored. */
    subscribedView(channel) {
        return this.sync.isSubscribed(channel) ? this.view(channel) : undefined;
    }
    applyPresence(users) {
        const changed = {};
        let any = false;
        for (const [user, entry] of Object.entries(users)) {
            if (!this.sync.isWatched(user))
                continue;
            this.statuses.set(user, entry);
            changed[user] = entry;
            any = true;
        }
        if (any)
            this.events.emit("presence", changed);
    }
    /** The server ended a channel this connection holds: the synchroniser forgets it, the view is cleared. */
    channelEnded(channel, reason) {
        if (typeof channel !== "string")
            return;
        // `forbidden` is the only reason protocol 1 has; another one is passed on as it is.
        const known = (typeof reason === "string" ? reason : "forbidden");
        const event = { channel, reason: known };
        if (!this.sync.end(channel, event.reason))
            return;
        this.peekView(channel)?.events.emit("unsubscribed", event);
        this.events.emit("unsubscribed", event);
    }
    dropView(channel) {
        this.views.get(channel)?.reset();
        this.releaseView(channel);
    }
    shutdown(error) {
        if (this.closedValue)
            return;
        this.closedValue = true;
        this.lingerTimer.cancel();
        this.onClosed(this);
        this.away.stop();
        this.refresher.cancel();
        this.link.stop();
        this.requests.failAll(error);
        this.sync.close(error);
        for (const view of this.views.values())
            view.reset();
        this.statuses.clear();
    }
}
