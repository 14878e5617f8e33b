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
import { ChannelView, type UnsubscribedEvent } from "./channel-view.js";
import { Emitter } from "./emitter.js";
import { PresenceError, errorFromFrame } from "./errors.js";
import type { CloseInfo, ConnectionState, Link } from "./link/link.js";
import { Transport } from "./link/transport.js";
import type { ResolvedOptions } from "./options.js";
import type {
  ClientFrame,
  OkFrame,
  PresenceEntry,
  ServerFrame,
  UnsubscribedReason,
  WelcomeFrame,
} from "./protocol.js";
import { RequestTracker } from "./requests.js";
import { Timer } from "./runtime.js";
import { SessionStore } from "./session-store.js";
import { StateSync, type OwnStatus } from "./state-sync.js";
import { UpdateThrottle } from "./throttle.js";
import { TokenRefresher, isProvider } from "./token.js";

export interface ConnectionEvents {
  state: ConnectionState;
  /** Statuses of watched users that changed (or were first received). */
  presence: Record<string, PresenceEntry>;
  error: PresenceError;
  kicked: CloseInfo;
  /** This connection's own status as asked for changed (`setStatus` or automatic away). */
  ownStatus: OwnStatus;
  /** The server took a channel away (also a channel event): its subscription and membership ended. */
  unsubscribed: UnsubscribedEvent;
}

/** Lets a `TabLeader` (`src/share/`) watch the connection it drives. */
export interface ConnectionObserver {
  /** Every frame after `welcome` (but `pong`), once the connection has handled it. */
  frame?(frame: ServerFrame): void;
  /** A `welcome` was handled (the desired state has been re-sent). */
  welcomed?(welcome: WelcomeFrame): void;
  /** The welcomed socket is gone. */
  lost?(): void;
  /** Replaces the `error` event for the synchroniser's errors (a tab leader answers them as replies). */
  syncError?(error: PresenceError): void;
}

export interface ConnectionExtras {
  /** What carries the frames; default a `Transport` (a socket of its own). */
  link?: Link;
  observer?: ConnectionObserver;
}

export class Connection {
  readonly events = new Emitter<ConnectionEvents>();
  readonly sync: StateSync;
  /** Throttles member data updates per channel (see the `updateThrottleMs` option). */
  readonly updates: UpdateThrottle;
  private readonly link: Link;
  private readonly observer: ConnectionObserver;
  private readonly requests: RequestTracker;
  private readonly sessions: SessionStore;
  private readonly refresher: TokenRefresher;
  private readonly away: AwayTracker;
  private readonly views = new Map<string, ChannelView>();
  private readonly statuses = new Map<string, PresenceEntry>();
  private readonly lingerTimer: Timer;
  private users = 0;
  private closedValue = false;
  private userId: string | null | undefined = undefined;

  constructor(
    readonly options: ResolvedOptions,
    /** Called once the connection is closed for good. */
    private readonly onClosed: (connection: Connection) => void,
    extras: ConnectionExtras = {},
  ) {
    const { clock } = options;
    this.observer = extras.observer ?? {};
    this.lingerTimer = new Timer(clock);
    this.sessions = new SessionStore(options.url, options.storage);
    this.link = extras.link ?? new Transport({ ...options, sessions: this.sessions });
    this.requests = new RequestTracker((frame) => this.link.send(frame), clock, options.requestTimeoutMs);
    this.sync = new StateSync(
      {
        connected: () => this.link.isConnected,
        send: (frame) => this.requests.send(frame),
        error: (error) => {
          if (this.observer.syncError) this.observer.syncError(error);
          else this.events.emit("error", error);
        },
        channelDropped: (channel) => this.dropView(channel),
        watchesDropped: (users) => {
          for (const user of users) this.statuses.delete(user);
        },
      },
      { clock, waitTimeoutMs: options.requestTimeoutMs, guest: options.token === null },
    );
    this.updates = new UpdateThrottle(clock, options.updateThrottleMs, (channel) => this.sync.syncChannel(channel));
    this.refresher = new TokenRefresher(
      isProvider(options.token) ? options.token : null,
      clock,
      options.refreshBeforeExpiryMs,
      {
        send: (token) => this.requests.send({ t: "refresh", token }),
        accepted: (token) => this.link.tokenRefreshed(token),
        offline: () => this.link.offline,
        error: (error) => this.events.emit("error", error),
      },
    );
    this.away = new AwayTracker(options.document, clock, options.awayAfterHiddenMs, (away) => {
      void this.ownStatusChange(() => this.sync.setAutoAway(away));
    });
    this.wireLink();
    this.link.start();
    this.away.start();
  }

  get state(): ConnectionState {
    return this.link.state;
  }

  get closed(): boolean {
    return this.closedValue;
  }

  /** The user id from the last `welcome` (null for a guest, undefined before the first). */
  get user(): string | null | undefined {
    return this.userId;
  }

  // ------------------------------------------------------------------ users of the connection

  acquire(): void {
    this.users += 1;
    this.lingerTimer.cancel();
  }

  /** One user fewer; the last one's leaving closes the socket after the release delay (no `bye`). */
  release(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0 || this.closedValue) return;
    this.lingerTimer.start(this.options.releaseDelayMs, () => {
      if (this.users === 0) this.shutdown(new PresenceError("unavailable", "client released"));
    });
  }

  /** Ends this user's presence at once: `bye`, then close. The resume token is forgotten. */
  logout(): void {
    if (this.closedValue) return;
    this.link.send({ t: "bye" });
    this.sessions.clear();
    this.shutdown(new PresenceError("unavailable", "logged out"));
  }

  /** Closes at once without `bye` (the server keeps the user for its grace window). */
  close(error = new PresenceError("unavailable", "client closed")): void {
    this.shutdown(error);
  }

  // ------------------------------------------------------------------ requests and views

  /** A request outside the desired state (publish): queued while disconnected. */
  request(frame: ClientFrame): Promise<OkFrame> {
    if (this.closedValue) return Promise.reject(new PresenceError("unavailable", "client is closed"));
    return this.requests.request(frame);
  }

  view(channel: string): ChannelView {
    let view = this.views.get(channel);
    if (!view) {
      view = new ChannelView();
      this.views.set(channel, view);
    }
    return view;
  }

  peekView(channel: string): ChannelView | undefined {
    return this.views.get(channel);
  }

  /** Forgets a channel's view when nothing subscribes to it or listens to it. */
  releaseView(channel: string): void {
    const view = this.views.get(channel);
    if (view && view.events.size === 0 && !this.sync.isSubscribed(channel)) this.views.delete(channel);
  }

  status(user: string): PresenceEntry | undefined {
    return this.statuses.get(user);
  }

  /** Sets the status asked for; emits `ownStatus` if that changes the status. */
  setOwnStatus(status: OwnStatus): Promise<void> {
    return this.ownStatusChange(() => this.sync.setStatus(status));
  }

  private ownStatusChange(change: () => Promise<void>): Promise<void> {
    const before = this.sync.status;
    const done = change();
    if (this.sync.status !== before) this.events.emit("ownStatus", this.sync.status);
    return done;
  }

  // ------------------------------------------------------------------ internals

  private wireLink(): void {
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

  private welcomed(welcome: WelcomeFrame): void {
    this.userId = welcome.user;
    this.sync.connectionUp(welcome.resumed);
    this.requests.flush();
    this.refresher.schedule(this.link.currentToken);
    this.observer.welcomed?.(welcome);
  }

  private lost(): void {
    this.refresher.cancel();
    this.requests.connectionLost();
    this.sync.connectionLost();
    for (const view of this.views.values()) view.suspend();
    this.observer.lost?.();
  }

  private route(frame: ServerFrame): void {
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
  private subscribedView(channel: string): ChannelView | undefined {
    return this.sync.isSubscribed(channel) ? this.view(channel) : undefined;
  }

  private applyPresence(users: Record<string, PresenceEntry>): void {
    const changed: Record<string, PresenceEntry> = {};
    let any = false;
    for (const [user, entry] of Object.entries(users)) {
      if (!this.sync.isWatched(user)) continue;
      this.statuses.set(user, entry);
      changed[user] = entry;
      any = true;
    }
    if (any) this.events.emit("presence", changed);
  }

  /** The server ended a channel this connection holds: the synchroniser forgets it, the view is cleared. */
  private channelEnded(channel: unknown, reason: unknown): void {
    if (typeof channel !== "string") return;
    // `forbidden` is the only reason protocol 1 has; another one is passed on as it is.
    const known = (typeof reason === "string" ? reason : "forbidden") as UnsubscribedReason;
    const event: UnsubscribedEvent = { channel, reason: known };
    if (!this.sync.end(channel, event.reason)) return;
    this.peekView(channel)?.events.emit("unsubscribed", event);
    this.events.emit("unsubscribed", event);
  }

  private dropView(channel: string): void {
    this.views.get(channel)?.reset();
    this.releaseView(channel);
  }

  private shutdown(error: PresenceError): void {
    if (this.closedValue) return;
    this.closedValue = true;
    this.lingerTimer.cancel();
    this.onClosed(this);
    this.away.stop();
    this.refresher.cancel();
    this.link.stop();
    this.requests.failAll(error);
    this.sync.close(error);
    for (const view of this.views.values()) view.reset();
    this.statuses.clear();
  }
}
