/**
 * A tab's link to the connection it shares with the other tabs of the origin
 * (`shareAcrossTabs`). To its `Connection` it looks like a transport: it
 * connects, is welcomed, carries request frames and delivers server frames,
 * drops and comes back. Underneath, the frames go over a BroadcastChannel to
 * the leader tab's `TabLeader` (tab-leader.ts), which owns the real socket.
 *
 * The link takes part in the leader election (election.ts). When this tab is
 * elected it starts a `TabLeader` and attaches to it like any other tab (messages to
 * itself are delivered in-process). When the leader changes, the virtual
 * connection drops and the link attaches to the new leader, which welcomes it
 * with `resumed: false` once its socket is up; the `Connection` then re-sends
 * everything the tab wants, exactly as after a reconnect without resume.
 *
 * With Web Locks every tab holds a lock of its own (`tabLockName`) while it
 * takes part, which the leader uses to find out when a tab is gone.
 */
import { Emitter } from "../emitter.js";
import { PresenceError } from "../errors.js";
import type { ConnectionState, Link, LinkEvents } from "../link/link.js";
import type { ResolvedOptions } from "../options.js";
import { CloseCode, type ClientFrame, type OutgoingFrame } from "../protocol.js";
import { Timer, type BroadcastChannelLike } from "../runtime.js";
import { LeaseElector, LockElector, type Elector } from "./election.js";
import {
  ALIVE_MS,
  MESSAGE_VERSION,
  abortController,
  channelName,
  cloneMessage,
  isFor,
  isForOthers,
  isTabMessage,
  leaderLockName,
  randomId,
  tabLockName,
  type TabMessage,
  type TabMessageBody,
} from "./messages.js";
import { TabLeader } from "./tab-leader.js";

export class SharedLink implements Link {
  readonly events = new Emitter<LinkEvents>();
  /** This tab's id in the group (a fresh one for every link). */
  readonly id = randomId();
  private readonly channel: BroadcastChannelLike;
  private readonly elector: Elector;
  private readonly aliveTimer: Timer;
  private stateValue: ConnectionState = "disconnected";
  private stopped = true;
  private hasConnected = false;
  /** The current virtual connection's id; null while there is none. */
  private conn: string | null = null;
  /** The tab this link attaches to (this tab itself when it leads). */
  private leader: string | null = null;
  /** Once another tab led, a session kept in this tab's storage is not the group's any more. */
  private sawOtherLeader = false;
  /** The leader's side, while this tab leads. */
  private leading: TabLeader | null = null;
  private releaseTabLock: () => void = () => {};
  /** Messages this tab sent to itself, delivered from a microtask (or at once by `stop`). */
  private readonly local: TabMessage[] = [];

  /**
   * Opens the BroadcastChannel; returns null where it cannot be opened (the
   * caller then makes a connection of the page's own).
   */
  static open(options: ResolvedOptions): SharedLink | null {
    const BroadcastChannel = options.BroadcastChannel;
    if (!BroadcastChannel) return null;
    let channel: BroadcastChannelLike;
    try {
      channel = new BroadcastChannel(channelName(options.url));
    } catch {
      return null;
    }
    return new SharedLink(options, channel);
  }

  private constructor(
    private readonly options: ResolvedOptions,
    channel: BroadcastChannelLike,
  ) {
    this.channel = channel;
    this.aliveTimer = new Timer(options.clock);
    const hooks = {
      post: (message: TabMessageBody) => this.post(message),
      elected: () => this.elected(),
      deposed: () => this.deposed(),
      leader: (id: string | null) => this.follow(id),
    };
    this.elector = options.locks
      ? new LockElector(this.id, options.locks, leaderLockName(options.url), hooks)
      : new LeaseElector(this.id, options.clock, hooks);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get isConnected(): boolean {
    return this.conn !== null;
  }

  /** The leader tab's connection watches the network. */
  get offline(): boolean {
    return false;
  }

  /** The leader tab's connection holds (and refreshes) the token. */
  get currentToken(): string | null {
    return null;
  }

  tokenRefreshed(): void {}

  start(): void {
    if (!this.stopped) return;
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
        if (this.stopped) return undefined;
        return new Promise<void>((resolve) => {
          this.releaseTabLock = resolve;
          this.elector.start();
        });
      })
      .catch(() => {});
  }

  stop(): void {
    if (this.stopped) return;
    // What this tab asked of its own leader side last (the unsubscribes of a release) still goes out.
    const pending = this.local.splice(0);
    if (this.leading) {
      for (const message of pending) {
        if (message.kind === "req" || message.kind === "detach") this.leading.receive(message);
      }
      this.leading.close();
      this.leading = null;
    } else if (this.leader !== null) {
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
    } catch {
      // Closing twice, or a host that throws: nothing more to do.
    }
    this.setState("disconnected");
  }

  send(frame: OutgoingFrame | ClientFrame): boolean {
    if (this.stopped) return false;
    if (frame.t === "bye") {
      this.logoutEverywhere();
      return true;
    }
    if (this.conn === null || this.leader === null) return false;
    // The leader's connection has its own heartbeat and token refresh.
    if (frame.t === "ping" || frame.t === "refresh") return true;
    this.post({ kind: "req", to: this.leader, conn: this.conn, frame });
    return true;
  }

  // ------------------------------------------------------------------ messages

  private post(body: TabMessageBody): void {
    const message = { ...body, v: MESSAGE_VERSION, from: this.id } as TabMessage;
    if (isForOthers(message, this.id)) {
      try {
        this.channel.postMessage(message);
      } catch {
        // A closed channel (the tab is going away): the others find out by the election.
      }
    }
    if (isFor(message, this.id)) {
      this.local.push(cloneMessage(message));
      if (this.local.length === 1) queueMicrotask(() => this.deliverLocal());
    }
  }

  private deliverLocal(): void {
    while (this.local.length > 0) this.dispatch(this.local.shift());
  }

  private dispatch(data: unknown): void {
    if (this.stopped || !isTabMessage(data) || !isFor(data, this.id)) return;
    const message = data;
    switch (message.kind) {
      case "discover":
      case "leader":
      case "claim":
      case "resign":
        this.elector.receive(message);
        break;
      case "logout":
        if (message.from !== this.id) this.endedElsewhere();
        break;
      case "attach":
      case "detach":
      case "alive":
      case "req":
        this.leading?.receive(message);
        break;
      default:
        if (message.from === this.leader) this.fromLeader(message);
        break;
    }
  }

  private fromLeader(message: TabMessage): void {
    switch (message.kind) {
      case "welcome": {
        if (this.conn !== null) this.drop("welcomed again");
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
        if (this.conn === message.conn && !this.stopped) this.setState("connected");
        break;
      }
      case "frame":
        if (this.conn !== null) this.events.emit("frame", message.frame);
        break;
      case "lost":
        this.drop("the leader's connection dropped");
        break;
      case "reset":
        this.drop("the leader does not know this tab");
        if (this.leader !== null) this.post({ kind: "attach", to: this.leader });
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

  private elected(): void {
    if (this.stopped) return;
    this.leading = new TabLeader(this.options, this.id, { post: (message) => this.post(message) }, !this.sawOtherLeader);
    this.follow(this.id);
  }

  private deposed(): void {
    this.leading?.close();
    this.leading = null;
  }

  /** Attaches to the tab that leads now (or waits, with null). */
  private follow(id: string | null): void {
    if (this.stopped || id === this.leader) return;
    if (id !== null && id !== this.id) this.sawOtherLeader = true;
    this.drop("the leader changed");
    this.leader = id;
    if (id !== null) this.post({ kind: "attach", to: id });
  }

  /** Without Web Locks the leader learns that a tab is gone when it stops saying it is alive. */
  private sayAlive(): void {
    this.aliveTimer.start(ALIVE_MS, () => {
      if (this.leader !== null && this.leader !== this.id) this.post({ kind: "alive", to: this.leader });
      this.sayAlive();
    });
  }

  // ------------------------------------------------------------------ ends

  /** The virtual connection is gone; the tab waits for the next welcome. */
  private drop(reason: string): void {
    if (this.conn === null) return;
    this.conn = null;
    this.events.emit("lost", { code: CloseCode.GoingAway, reason });
    if (!this.stopped) this.setState(this.hasConnected ? "reconnecting" : "connecting");
  }

  /** `logout()` in this tab: the leader says `bye`, and every tab ends. */
  private logoutEverywhere(): void {
    if (this.leading) {
      this.leading.logout();
      this.leading = null;
    }
    this.post({ kind: "logout" });
  }

  /** `logout()` in another tab. */
  private endedElsewhere(): void {
    if (this.leading) {
      this.leading.logout();
      this.leading = null;
    }
    this.events.emit("ended", new PresenceError("unavailable", "logged out in another tab"));
  }

  private setState(state: ConnectionState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.events.emit("state", state);
  }
}
