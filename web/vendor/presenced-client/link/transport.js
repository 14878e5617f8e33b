/**
 * `Transport`: the link of a connection that has a socket of its own. It runs
 * the socket's life: connect, `hello`/`welcome`, heartbeats, and reconnects
 * with full-jitter backoff according to the close code. It knows nothing of
 * channels; it hands every frame after `welcome` to its owner.
 *
 * While a lost connection may still be resumed (the server keeps its session
 * for `grace_ms` after the drop), no delay exceeds a third of `grace_ms`, so
 * that several tries fall inside the window; a pending retry is tried at once
 * when the browser comes back `online`, the page becomes visible or gets the
 * focus.
 *
 * While the browser says it is offline (its `offline` event, until `online`)
 * nothing is tried and the token provider is not called; the state is
 * `reconnecting` (a welcomed socket is kept, as it may live through a short
 * outage). Back `online`, a welcomed socket is checked with a `ping`: no
 * answer within `ONLINE_CHECK_MS` and it is dropped for a new one at once.
 */
import { DEFAULT_BACKOFF, backoffDelay } from "../backoff.js";
import { Emitter } from "../emitter.js";
import { errorFromFrame, toPresenceError } from "../errors.js";
import { CloseCode, REPLACED_REASON } from "../protocol.js";
import { Timer, listen, } from "../runtime.js";
import { isProvider } from "../token.js";
/** How long a socket has to answer the `ping` sent when the browser comes back online. */
export const ONLINE_CHECK_MS = 3000;
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
        /** `grace_ms` of the last welcome; null before the first. */
        this.graceMs = null;
        /** When the last welcomed connection was lost; null while none was. */
        this.lostAt = null;
        /** The browser says it is offline (from its `offline` event until `online`). */
        this.offlineValue = false;
        /** A try is due once the browser is back online. */
        this.waitingForOnline = false;
        /** A `ping` is out to check the socket after the browser came back online. */
        this.checking = false;
        /** Pings written to this socket, and pongs read from it (answered in order). */
        this.pingsSent = 0;
        this.pongsSeen = 0;
        /** The check is answered by the pong of the `pingsSent`-th ping. */
        this.checkPing = 0;
        this.unlisten = [];
        const { clock } = options;
        this.retryTimer = new Timer(clock);
        this.connectTimer = new Timer(clock);
        this.pingTimer = new Timer(clock);
        this.watchdogTimer = new Timer(clock);
        this.checkTimer = new Timer(clock);
    }
    get state() {
        return this.stateValue;
    }
    get isConnected() {
        return this.connected;
    }
    /** Whether the browser says it is offline. */
    get offline() {
        return this.offlineValue;
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
        const { window, document } = this.options;
        this.offlineValue = startsOffline(window);
        this.unlisten = [
            listen(window, "offline", () => this.wentOffline()),
            listen(window, "online", () => this.cameOnline()),
            listen(window, "focus", () => this.retryNow()),
            listen(document, "visibilitychange", () => {
                if (document?.visibilityState === "visible")
                    this.retryNow();
            }),
        ];
        this.connect();
    }
    /** Closes the socket for good (until `start` again). */
    stop() {
        if (this.stopped)
            return;
        this.stopped = true;
        this.generation += 1;
        this.retryTimer.cancel();
        for (const unlisten of this.unlisten.splice(0))
            unlisten();
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
            if (frame.t === "ping")
                this.pingsSent++;
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
        if (this.offlineValue) {
            this.waitForOnline();
            return;
        }
        this.waitingForOnline = false;
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
        if (frame.t === "pong")
            this.pongsSeen++;
        if (this.connected && this.checking && frame.t === "pong" && this.pongsSeen >= this.checkPing) {
            // The socket answered the check's own ping after the browser came back
            // online (a frame, or the pong of an earlier ping, that was already on
            // its way says nothing about the socket now).
            this.checking = false;
            this.checkTimer.cancel();
            if (!this.offlineValue)
                this.setState("connected");
        }
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
        this.lostAt = null;
        if (typeof frame.grace_ms === "number" && frame.grace_ms >= 0)
            this.graceMs = frame.grace_ms;
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
        if (wasConnected) {
            this.lostAt = this.options.clock.now();
            this.events.emit("lost", { code, reason });
        }
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
        this.checking = false;
        this.pingsSent = 0;
        this.pongsSeen = 0;
        this.connectTimer.cancel();
        this.pingTimer.cancel();
        this.watchdogTimer.cancel();
        this.checkTimer.cancel();
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
        if (this.offlineValue) {
            this.waitForOnline();
            return;
        }
        const delay = backoffDelay(this.attempt, this.retryBackoff(), this.options.random);
        this.attempt += 1;
        this.setState("reconnecting");
        this.retryTimer.start(delay, () => this.connect());
    }
    /** The backoff, its cap kept at a third of `grace_ms` while the lost session may still be resumed. */
    retryBackoff() {
        const { backoff, sessions, clock } = this.options;
        const { graceMs, lostAt } = this;
        if (graceMs === null || lostAt === null || sessions.get() === null)
            return backoff;
        if (clock.now() - lostAt >= graceMs)
            return backoff;
        const capMs = Math.min(backoff.capMs ?? DEFAULT_BACKOFF.capMs, Math.floor(graceMs / 3));
        return { ...backoff, capMs };
    }
    /** Tries a pending retry at once (the network or the user is back). */
    retryNow() {
        if (!this.stopped && !this.offlineValue && this.retryTimer.pending)
            this.connect();
    }
    /** No try (and no call of the token provider) until the browser is back online. */
    waitForOnline() {
        this.retryTimer.cancel();
        this.waitingForOnline = true;
        this.setState(this.hasTried ? "reconnecting" : "connecting");
    }
    wentOffline() {
        if (this.stopped || this.offlineValue)
            return;
        this.offlineValue = true;
        this.checking = false;
        this.checkTimer.cancel();
        if (this.retryTimer.pending)
            this.waitForOnline();
        // A welcomed socket is kept (it may live through a short outage) but cannot be relied on.
        this.setState(this.hasTried || this.connected ? "reconnecting" : "connecting");
    }
    cameOnline() {
        if (this.stopped)
            return;
        this.offlineValue = false;
        if (this.connected)
            this.check();
        else if (this.waitingForOnline || this.retryTimer.pending)
            this.connect();
    }
    /** Sends a `ping`; without an answer within `ONLINE_CHECK_MS` the socket is dropped for a new one. */
    check() {
        const ws = this.ws;
        if (!this.send({ t: "ping" }))
            return;
        this.checkPing = this.pingsSent;
        this.checking = true;
        this.checkTimer.start(ONLINE_CHECK_MS, () => {
            if (this.ws !== ws || !this.checking)
                return;
            this.giveUpSocket("no answer after going online");
            this.retryNow();
        });
    }
    setState(state) {
        if (state === this.stateValue)
            return;
        this.stateValue = state;
        this.events.emit("state", state);
    }
}
/** Whether the page starts offline (`navigator.onLine` of the `window` option is false). */
function startsOffline(window) {
    return window?.navigator?.onLine === false;
}
