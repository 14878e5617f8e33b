/**
 * What carries a connection's frames.
 *
 * `Transport`: the socket's life: connect, `hello`/`welcome`, heartbeats, and
 * reconnects with full-jitter backoff according to the close code. It knows
 * nothing of channels; it hands every frame after `welcome` to its owner.
 *
 * With `shareAcrossTabs`, `SharedLink` instead: the tab's side of a socket
 * shared by the tabs of the origin, over a BroadcastChannel — the messages
 * tabs exchange, the election of the leader tab (which holds the socket; its
 * side is the `Hub` in connection.ts), and the tab's virtual connection to it.
 */
import { backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { PresenceError, errorFromFrame, toPresenceError } from "./errors.js";
import { CloseCode, REPLACED_REASON, } from "./protocol.js";
import { Timer, listen, } from "./runtime.js";
import { isProvider } from "./token.js";
/** Close code the client uses for sockets it gives up on (no welcome in time, heartbeat missed). */
const CLIENT_TIMEOUT = 4000;
const WS_CLOSING = 2;
export class Transport {
    constructor(options) {
        this.options = options;
        this.events = new Emitter();
        this.ws = null;
        this.stateValue = "disconnected";
        this.connected = false;
        this.stopped = true;
        this.attempt = 0;
        /** Bumped whenever a connect attempt starts or the transport stops, to drop stale async results. */
        this.generation = 0;
        this.hasTried = false;
        /** The token the current or last socket authenticated with. */
        this.token = null;
        /** After a 4401: a provider must come up with a different token before the next socket. */
        this.rejectedToken = undefined;
        this.heartbeatMs = 0;
        this.lastFrameAt = 0;
        this.unlistenOnline = () => { };
        const { clock } = options;
        this.retryTimer = new Timer(clock);
        this.connectTimer = new Timer(clock);
        this.pingTimer = new Timer(clock);
        this.watchdogTimer = new Timer(clock);
    }
    get state() {
        return this.stateValue;
    }
    get isConnected() {
        return this.connected;
    }
    /** The token the connection is authenticated with. */
    get currentToken() {
        return this.token;
    }
    /** A `refresh` succeeded: the connection now runs on this token. */
    tokenRefreshed(token) {
        this.token = token;
    }
    start() {
        if (!this.stopped)
            return;
        this.stopped = false;
        this.unlistenOnline = listen(this.options.window, "online", () => this.onOnline());
        this.connect();
    }
    /** Closes the socket for good (until `start` again). */
    stop() {
        if (this.stopped)
            return;
        this.stopped = true;
        this.generation += 1;
        this.retryTimer.cancel();
        this.unlistenOnline();
        this.closeSocket(CloseCode.Normal, "client closed");
        this.setState("disconnected");
    }
    /** Writes a frame to the live connection; false when there is none. */
    send(frame) {
        const ws = this.ws;
        if (!this.connected || !ws)
            return false;
        try {
            ws.send(JSON.stringify(frame));
            return true;
        }
        catch {
            // A socket that cannot send is dead. Dropping it from a microtask lets
            // the caller finish first; the drop then marks the unanswered requests.
            queueMicrotask(() => {
                if (this.ws === ws)
                    this.giveUpSocket("send failed");
            });
            return false;
        }
    }
    connect() {
        this.retryTimer.cancel();
        const generation = ++this.generation;
        this.setState(this.hasTried ? "reconnecting" : "connecting");
        this.hasTried = true;
        const source = this.options.token;
        if (!isProvider(source)) {
            this.open(source);
            return;
        }
        Promise.resolve()
            .then(source)
            .then((token) => {
            if (generation !== this.generation)
                return;
            if (token === this.rejectedToken) {
                // The provider has nothing newer than the token the server refused.
                this.retry();
                return;
            }
            this.open(token);
        }, (err) => {
            if (generation !== this.generation)
                return;
            this.events.emit("error", toPresenceError(err, "unauthorized"));
            this.retry();
        });
    }
    open(token) {
        let ws;
        try {
            ws = new this.options.WebSocket(this.options.url);
        }
        catch (err) {
            this.events.emit("error", toPresenceError(err, "unavailable"));
            this.retry();
            return;
        }
        this.ws = ws;
        this.token = token;
        this.connectTimer.start(this.options.connectTimeoutMs, () => this.giveUpSocket("connect timeout"));
        ws.onopen = () => this.sendHello(ws, token);
        ws.onmessage = (event) => this.receive(event.data);
        ws.onclose = (event) => this.closed(event.code, event.reason);
        // An `error` event is always followed by `close`, which does the work.
        ws.onerror = () => { };
    }
    sendHello(ws, token) {
        const resume = this.options.sessions.get();
        const hello = { t: "hello", token, client: this.options.clientName };
        if (resume)
            hello.resume = resume;
        try {
            ws.send(JSON.stringify(hello));
        }
        catch {
            this.giveUpSocket("hello failed");
        }
    }
    receive(data) {
        if (typeof data !== "string")
            return;
        let frame;
        try {
            frame = JSON.parse(data);
        }
        catch {
            return;
        }
        if (!frame || typeof frame !== "object" || typeof frame.t !== "string")
            return;
        this.lastFrameAt = this.options.clock.now();
        if (this.connected) {
            if (frame.t !== "pong")
                this.events.emit("frame", frame);
        }
        else if (frame.t === "welcome") {
            this.welcomed(frame);
        }
        else if (frame.t === "error") {
            // The hello was refused; the close that follows decides what happens next.
            this.events.emit("error", errorFromFrame(frame));
        }
    }
    welcomed(frame) {
        this.connectTimer.cancel();
        this.connected = true;
        this.attempt = 0;
        this.rejectedToken = undefined;
        this.options.sessions.set(frame.session);
        this.startHeartbeat(frame.heartbeat_ms);
        this.events.emit("welcome", frame);
        // The owner may have stopped the transport while handling the welcome.
        if (this.connected)
            this.setState("connected");
    }
    startHeartbeat(heartbeatMs) {
        this.heartbeatMs = heartbeatMs > 0 ? heartbeatMs : 0;
        if (this.heartbeatMs === 0)
            return;
        const ping = () => {
            this.send({ t: "ping" });
            this.pingTimer.start(this.heartbeatMs, ping);
        };
        this.pingTimer.start(this.heartbeatMs, ping);
        this.armWatchdog(2 * this.heartbeatMs);
    }
    /** Checks for silence without re-arming a timer on every frame. */
    armWatchdog(ms) {
        this.watchdogTimer.start(ms, () => {
            const silence = this.options.clock.now() - this.lastFrameAt;
            const limit = 2 * this.heartbeatMs;
            if (silence >= limit)
                this.giveUpSocket("heartbeat timeout");
            else
                this.armWatchdog(limit - silence);
        });
    }
    /** Abandons a socket the client considers dead, without waiting for its close handshake. */
    giveUpSocket(reason) {
        this.closed(CLIENT_TIMEOUT, reason);
    }
    closed(code, reason) {
        const wasConnected = this.connected;
        this.closeSocket(CLIENT_TIMEOUT, reason);
        if (wasConnected)
            this.events.emit("lost", { code, reason });
        if (this.stopped)
            return;
        if (code === CloseCode.Kicked) {
            this.options.sessions.clear();
            this.stop();
            this.events.emit("kicked", { code, reason });
            return;
        }
        if (code === CloseCode.Normal && reason === REPLACED_REASON) {
            // Another socket resumed this session (a duplicated tab, say): start a session of our own.
            this.options.sessions.clear();
        }
        if (code === CloseCode.Unauthorized) {
            this.rejectedToken = this.token;
            if (isProvider(this.options.token) && this.attempt === 0) {
                this.attempt = 1;
                this.connect();
                return;
            }
        }
        this.retry();
    }
    /** Detaches and closes the current socket, if any, and stops its timers. */
    closeSocket(code, reason) {
        this.connected = false;
        this.connectTimer.cancel();
        this.pingTimer.cancel();
        this.watchdogTimer.cancel();
        const ws = this.ws;
        if (!ws)
            return;
        this.ws = null;
        ws.onopen = null;
        ws.onmessage = null;
        ws.onclose = null;
        ws.onerror = null;
        if (ws.readyState < WS_CLOSING) {
            try {
                ws.close(code, reason);
            }
            catch {
                // Already failing: nothing more to do with it.
            }
        }
    }
    retry() {
        if (this.stopped)
            return;
        const delay = backoffDelay(this.attempt, this.options.backoff, this.options.random);
        this.attempt += 1;
        this.setState("reconnecting");
        this.retryTimer.start(delay, () => this.connect());
    }
    onOnline() {
        if (!this.stopped && this.retryTimer.pending)
            this.connect();
    }
    setState(state) {
        if (state === this.stateValue)
            return;
        this.stateValue = state;
        this.events.emit("state", state);
    }
}
// ================================================================== sharing across tabs: messages
/*
 * The messages tabs exchange over their BroadcastChannel with
 * `shareAcrossTabs` (one channel per server URL). Every message names its
 * sender (`from`, a random id per tab and connection); `to`, when present,
 * names the recipients and everyone else ignores it.
 *
 * - Election: `discover` (who leads?), `leader` (I lead, in `term`),
 *   `resign` (I stop leading), `claim` (heartbeat election only).
 * - Tab to leader: `attach` (open a virtual connection), `req` (a request
 *   frame on that virtual connection `conn`), `detach`, `alive` (heartbeat
 *   election only).
 * - Leader to tabs: `welcome` (the virtual connection is up), `frame` (a
 *   server frame or a reply), `lost` (the real connection dropped; a new
 *   `welcome` follows), `reset` (unknown tab: attach again), `error` and
 *   `kicked` (from the real connection).
 * - Anyone: `logout` (every tab ends its presence).
 */
export const MESSAGE_VERSION = 1;
export function isTabMessage(data) {
    if (typeof data !== "object" || data === null)
        return false;
    const message = data;
    return message.v === MESSAGE_VERSION && typeof message.kind === "string" && typeof message.from === "string";
}
/** Whether a message is meant for `id` (messages without `to` are for everyone). */
export function isFor(message, id) {
    const { to } = message;
    if (to === undefined)
        return true;
    return typeof to === "string" ? to === id : to.includes(id);
}
/** Whether a message has recipients other than `id`. */
export function isForOthers(message, id) {
    const { to } = message;
    if (to === undefined)
        return true;
    return typeof to === "string" ? to !== id : to.some((recipient) => recipient !== id);
}
export function channelName(url) {
    return `presenced:tabs:${url}`;
}
export function leaderLockName(url) {
    return `presenced:leader:${url}`;
}
/** Held by every tab while it takes part; granted to the leader once the tab is gone. */
export function tabLockName(url, tab) {
    return `presenced:tab:${url}:${tab}`;
}
let counter = 0;
/** A random id for a tab's part in sharing (not security sensitive). */
export function randomId() {
    const crypto = globalThis.crypto;
    let random = "";
    if (crypto && typeof crypto.getRandomValues === "function") {
        random = Array.from(crypto.getRandomValues(new Uint8Array(9)), (b) => b.toString(16).padStart(2, "0")).join("");
    }
    else {
        random = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    }
    counter += 1;
    return `${random}-${counter.toString(36)}`;
}
/** A copy as a BroadcastChannel would deliver it, for messages a tab sends to itself. */
export function cloneMessage(message) {
    const clone = globalThis.structuredClone;
    return typeof clone === "function" ? clone(message) : JSON.parse(JSON.stringify(message));
}
/** An AbortController where the host has one. */
export function abortController() {
    return typeof AbortController === "function" ? new AbortController() : null;
}
/** Without Web Locks, how often followers tell the leader they are alive. */
export const ALIVE_MS = 1000;
export class LockElector {
    constructor(id, locks, lockName, hooks) {
        this.id = id;
        this.locks = locks;
        this.lockName = lockName;
        this.hooks = hooks;
        this.leading = false;
        this.leaderId = null;
        this.term = 0;
        this.stopped = false;
        this.release = () => { };
        /** Tabs that resigned: a late announcement of theirs is stale. */
        this.resigned = new Set();
    }
    start() {
        this.hooks.post({ kind: "discover" });
        const controller = abortController();
        this.release = () => controller?.abort();
        this.locks
            .request(this.lockName, controller ? { signal: controller.signal } : {}, () => {
            if (this.stopped)
                return undefined;
            return new Promise((resolve) => {
                this.release = resolve;
                this.leading = true;
                this.term += 1;
                this.leaderId = this.id;
                this.hooks.elected();
                this.announce();
            });
        })
            .catch(() => {
            // Aborted: this tab stopped before it was its turn.
        });
    }
    stop() {
        if (this.stopped)
            return;
        this.stopped = true;
        if (this.leading) {
            this.leading = false;
            this.hooks.post({ kind: "resign" });
        }
        this.release();
    }
    receive(message) {
        if (message.from === this.id || this.stopped)
            return;
        const m = message;
        switch (m.kind) {
            case "discover":
                if (this.leading)
                    this.announce();
                break;
            case "leader":
                this.term = Math.max(this.term, m.term);
                // The lock makes one leader at a time: the latest announcement is the one.
                if (this.leading || m.from === this.leaderId || this.resigned.has(m.from))
                    return;
                this.leaderId = m.from;
                this.hooks.leader(m.from);
                break;
            case "resign":
                this.resigned.add(m.from);
                if (m.from === this.leaderId) {
                    this.leaderId = null;
                    this.hooks.leader(null);
                }
                break;
            default:
                break;
        }
    }
    announce() {
        this.hooks.post({ kind: "leader", term: this.term });
    }
}
export const LEASE_TIMINGS = { heartbeatMs: 400, timeoutMs: 1500, claimMs: 250 };
/** Higher term wins, then the smaller id. */
function better(a, b) {
    return a.term > b.term || (a.term === b.term && a.id < b.id);
}
export class LeaseElector {
    constructor(id, clock, hooks, timings = LEASE_TIMINGS) {
        this.id = id;
        this.clock = clock;
        this.hooks = hooks;
        this.timings = timings;
        this.leading = false;
        this.leaderId = null;
        this.leaderTerm = 0;
        this.lastHeard = 0;
        this.maxTerm = 0;
        this.claimTerm = null;
        this.stopped = true;
        this.heartbeat = new Timer(clock);
        this.watchdog = new Timer(clock);
        this.claimTimer = new Timer(clock);
    }
    start() {
        if (!this.stopped)
            return;
        this.stopped = false;
        this.hooks.post({ kind: "discover" });
        // Nobody answered the discover in time: nobody leads.
        this.claimTimer.start(this.timings.claimMs, () => {
            if (!this.leading && this.leaderId === null)
                this.claim();
        });
        this.watch();
    }
    stop() {
        if (this.stopped)
            return;
        this.stopped = true;
        this.heartbeat.cancel();
        this.watchdog.cancel();
        this.claimTimer.cancel();
        if (this.leading) {
            this.leading = false;
            this.hooks.post({ kind: "resign" });
        }
    }
    receive(message) {
        if (message.from === this.id || this.stopped)
            return;
        const m = message;
        switch (m.kind) {
            case "discover":
                if (this.leading)
                    this.announce();
                break;
            case "leader":
                this.heardLeader(m.from, m.term);
                break;
            case "claim":
                this.maxTerm = Math.max(this.maxTerm, m.term);
                if (this.leading) {
                    this.announce();
                }
                else if (this.claimTerm !== null && better({ term: m.term, id: m.from }, { term: this.claimTerm, id: this.id })) {
                    // A better claim: let it win; the watchdog claims again if it does not.
                    this.claimTerm = null;
                    this.claimTimer.cancel();
                }
                break;
            case "resign":
                if (m.from === this.leaderId) {
                    this.leaderId = null;
                    this.hooks.leader(null);
                    this.claim();
                }
                break;
            default:
                break;
        }
    }
    heardLeader(from, term) {
        this.maxTerm = Math.max(this.maxTerm, term);
        const now = this.clock.now();
        if (this.leading) {
            if (better({ term, id: from }, { term: this.leaderTerm, id: this.id })) {
                this.leading = false;
                this.heartbeat.cancel();
                this.hooks.deposed();
                this.follow(from, term, now);
            }
            else {
                this.announce();
            }
            return;
        }
        // A live leader: no claim needed.
        this.claimTerm = null;
        this.claimTimer.cancel();
        if (from === this.leaderId) {
            this.lastHeard = now;
            this.leaderTerm = Math.max(this.leaderTerm, term);
            return;
        }
        const expired = now - this.lastHeard > this.timings.timeoutMs;
        if (this.leaderId === null || expired || better({ term, id: from }, { term: this.leaderTerm, id: this.leaderId })) {
            this.follow(from, term, now);
        }
    }
    follow(id, term, now) {
        this.leaderId = id;
        this.leaderTerm = term;
        this.lastHeard = now;
        this.hooks.leader(id);
    }
    watch() {
        this.watchdog.start(this.timings.heartbeatMs, () => {
            if (!this.leading && this.claimTerm === null) {
                if (this.leaderId !== null && this.clock.now() - this.lastHeard > this.timings.timeoutMs) {
                    this.leaderId = null;
                    this.hooks.leader(null);
                    this.claim();
                }
                else if (this.leaderId === null && !this.claimTimer.pending) {
                    this.claim();
                }
            }
            this.watch();
        });
    }
    claim() {
        if (this.stopped || this.leading)
            return;
        const term = this.maxTerm + 1;
        this.claimTerm = term;
        this.hooks.post({ kind: "claim", term });
        this.claimTimer.start(this.timings.claimMs, () => {
            if (this.claimTerm === term)
                this.lead(term);
        });
    }
    lead(term) {
        this.claimTerm = null;
        this.leading = true;
        this.leaderId = this.id;
        this.leaderTerm = term;
        this.maxTerm = Math.max(this.maxTerm, term);
        this.hooks.elected();
        this.announce();
        const beat = () => {
            this.heartbeat.start(this.timings.heartbeatMs, () => {
                this.announce();
                beat();
            });
        };
        beat();
    }
    announce() {
        this.hooks.post({ kind: "leader", term: this.leaderTerm });
    }
}
// ================================================================== sharing across tabs: the tab's link
/*
 * A tab's link to the connection it shares with the other tabs of the origin
 * (`shareAcrossTabs`). To its `Connection` it looks like a transport: it
 * connects, is welcomed, carries request frames and delivers server frames,
 * drops and comes back. Underneath, the frames go over a BroadcastChannel to
 * the leader tab's `Hub`, which owns the real socket.
 *
 * The link takes part in the leader election (above). When this tab is
 * elected it starts a hub and attaches to it like any other tab (messages to
 * itself are delivered in-process). When the leader changes, the virtual
 * connection drops and the link attaches to the new leader, which welcomes it
 * with `resumed: false` once its socket is up; the `Connection` then re-sends
 * everything the tab wants, exactly as after a reconnect without resume.
 *
 * With Web Locks every tab holds a lock of its own (`tabLockName`) while it
 * takes part, which the leader uses to find out when a tab is gone.
 */
export class SharedLink {
    /**
     * Opens the BroadcastChannel; returns null where it cannot be opened (the
     * caller then makes a connection of the page's own).
     */
    static open(options, startHub) {
        const BroadcastChannel = options.BroadcastChannel;
        if (!BroadcastChannel)
            return null;
        let channel;
        try {
            channel = new BroadcastChannel(channelName(options.url));
        }
        catch {
            return null;
        }
        return new SharedLink(options, channel, startHub);
    }
    constructor(options, channel, startHub) {
        this.options = options;
        this.startHub = startHub;
        this.events = new Emitter();
        /** This tab's id in the group (a fresh one for every link). */
        this.id = randomId();
        this.stateValue = "disconnected";
        this.stopped = true;
        this.hasConnected = false;
        /** The current virtual connection's id; null while there is none. */
        this.conn = null;
        /** The tab this link attaches to (this tab itself when it leads). */
        this.leader = null;
        /** Once another tab led, a session kept in this tab's storage is not the group's any more. */
        this.sawOtherLeader = false;
        this.hub = null;
        this.releaseTabLock = () => { };
        /** Messages this tab sent to itself, delivered from a microtask (or at once by `stop`). */
        this.local = [];
        this.channel = channel;
        this.aliveTimer = new Timer(options.clock);
        const hooks = {
            post: (message) => this.post(message),
            elected: () => this.elected(),
            deposed: () => this.deposed(),
            leader: (id) => this.follow(id),
        };
        this.elector = options.locks
            ? new LockElector(this.id, options.locks, leaderLockName(options.url), hooks)
            : new LeaseElector(this.id, options.clock, hooks);
    }
    get state() {
        return this.stateValue;
    }
    get isConnected() {
        return this.conn !== null;
    }
    /** The leader tab's connection holds (and refreshes) the token. */
    get currentToken() {
        return null;
    }
    tokenRefreshed() { }
    start() {
        if (!this.stopped)
            return;
        this.stopped = false;
        this.setState("connecting");
        this.channel.onmessage = (event) => this.dispatch(event.data);
        const { locks } = this.options;
        if (!locks) {
            this.elector.start();
            this.sayAlive();
            return;
        }
        // Hold this tab's own lock before anyone can ask for it.
        const controller = abortController();
        this.releaseTabLock = () => controller?.abort();
        locks
            .request(tabLockName(this.options.url, this.id), controller ? { signal: controller.signal } : {}, () => {
            if (this.stopped)
                return undefined;
            return new Promise((resolve) => {
                this.releaseTabLock = resolve;
                this.elector.start();
            });
        })
            .catch(() => { });
    }
    stop() {
        if (this.stopped)
            return;
        // What this tab asked of its own hub last (the unsubscribes of a release) still goes out.
        const pending = this.local.splice(0);
        if (this.hub) {
            for (const message of pending) {
                if (message.kind === "req" || message.kind === "detach")
                    this.hub.receive(message);
            }
            this.hub.close();
            this.hub = null;
        }
        else if (this.leader !== null) {
            this.post({ kind: "detach", to: this.leader });
        }
        this.elector.stop();
        this.stopped = true;
        this.conn = null;
        this.leader = null;
        this.aliveTimer.cancel();
        this.releaseTabLock();
        this.channel.onmessage = null;
        try {
            this.channel.close();
        }
        catch {
            // Closing twice, or a host that throws: nothing more to do.
        }
        this.setState("disconnected");
    }
    send(frame) {
        if (this.stopped)
            return false;
        if (frame.t === "bye") {
            this.logoutEverywhere();
            return true;
        }
        if (this.conn === null || this.leader === null)
            return false;
        // The leader's connection has its own heartbeat and token refresh.
        if (frame.t === "ping" || frame.t === "refresh")
            return true;
        this.post({ kind: "req", to: this.leader, conn: this.conn, frame });
        return true;
    }
    // ------------------------------------------------------------------ messages
    post(body) {
        const message = { ...body, v: MESSAGE_VERSION, from: this.id };
        if (isForOthers(message, this.id)) {
            try {
                this.channel.postMessage(message);
            }
            catch {
                // A closed channel (the tab is going away): the others find out by the election.
            }
        }
        if (isFor(message, this.id)) {
            this.local.push(cloneMessage(message));
            if (this.local.length === 1)
                queueMicrotask(() => this.deliverLocal());
        }
    }
    deliverLocal() {
        while (this.local.length > 0)
            this.dispatch(this.local.shift());
    }
    dispatch(data) {
        if (this.stopped || !isTabMessage(data) || !isFor(data, this.id))
            return;
        const message = data;
        switch (message.kind) {
            case "discover":
            case "leader":
            case "claim":
            case "resign":
                this.elector.receive(message);
                break;
            case "logout":
                if (message.from !== this.id)
                    this.endedElsewhere();
                break;
            case "attach":
            case "detach":
            case "alive":
            case "req":
                this.hub?.receive(message);
                break;
            default:
                if (message.from === this.leader)
                    this.fromLeader(message);
                break;
        }
    }
    fromLeader(message) {
        switch (message.kind) {
            case "welcome": {
                if (this.conn !== null)
                    this.drop("welcomed again");
                this.conn = message.conn;
                this.hasConnected = true;
                this.events.emit("welcome", {
                    t: "welcome",
                    conn: message.conn,
                    user: message.user,
                    session: "",
                    resumed: message.resumed,
                    heartbeat_ms: 0,
                    grace_ms: message.grace_ms,
                });
                if (this.conn === message.conn && !this.stopped)
                    this.setState("connected");
                break;
            }
            case "frame":
                if (this.conn !== null)
                    this.events.emit("frame", message.frame);
                break;
            case "lost":
                this.drop("the leader's connection dropped");
                break;
            case "reset":
                this.drop("the leader does not know this tab");
                if (this.leader !== null)
                    this.post({ kind: "attach", to: this.leader });
                break;
            case "error":
                this.events.emit("error", new PresenceError(message.code, message.message));
                break;
            case "kicked":
                this.events.emit("kicked", { code: message.code, reason: message.reason });
                break;
            default:
                break;
        }
    }
    // ------------------------------------------------------------------ election
    elected() {
        if (this.stopped)
            return;
        this.hub = this.startHub(this.options, this.id, { post: (message) => this.post(message) }, !this.sawOtherLeader);
        this.follow(this.id);
    }
    deposed() {
        this.hub?.close();
        this.hub = null;
    }
    /** Attaches to the tab that leads now (or waits, with null). */
    follow(id) {
        if (this.stopped || id === this.leader)
            return;
        if (id !== null && id !== this.id)
            this.sawOtherLeader = true;
        this.drop("the leader changed");
        this.leader = id;
        if (id !== null)
            this.post({ kind: "attach", to: id });
    }
    /** Without Web Locks the leader learns that a tab is gone when it stops saying it is alive. */
    sayAlive() {
        this.aliveTimer.start(ALIVE_MS, () => {
            if (this.leader !== null && this.leader !== this.id)
                this.post({ kind: "alive", to: this.leader });
            this.sayAlive();
        });
    }
    // ------------------------------------------------------------------ ends
    /** The virtual connection is gone; the tab waits for the next welcome. */
    drop(reason) {
        if (this.conn === null)
            return;
        this.conn = null;
        this.events.emit("lost", { code: CloseCode.GoingAway, reason });
        if (!this.stopped)
            this.setState(this.hasConnected ? "reconnecting" : "connecting");
    }
    /** `logout()` in this tab: the leader says `bye`, and every tab ends. */
    logoutEverywhere() {
        if (this.hub) {
            this.hub.logout();
            this.hub = null;
        }
        this.post({ kind: "logout" });
    }
    /** `logout()` in another tab. */
    endedElsewhere() {
        if (this.hub) {
            this.hub.logout();
            this.hub = null;
        }
        this.events.emit("ended", new PresenceError("unavailable", "logged out in another tab"));
    }
    setState(state) {
        if (state === this.stateValue)
            return;
        this.stateValue = state;
        this.events.emit("state", state);
    }
}
