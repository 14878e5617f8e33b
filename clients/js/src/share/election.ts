/**
 * Which tab leads (holds the real socket) with `shareAcrossTabs`.
 *
 * `LockElector`: the leader is the tab holding the Web Lock
 * `presenced:leader:<url>`; every other tab waits in the lock's queue, so when
 * the leader closes or crashes the browser hands the lock to the next tab at
 * once. Tabs learn who leads from `leader` announcements (sent on election
 * and in answer to `discover`).
 *
 * `LeaseElector` (no Web Locks): the leader announces itself every
 * `heartbeatMs`; a tab that has heard nothing for `timeoutMs` (or on
 * `resign`) claims the next term and leads unless, within `claimMs`, a live
 * leader or a better claim (higher term, then smaller id) shows up. Two
 * leaders resolve the same way: the worse one steps down.
 */
import { Timer, type Clock, type LockManagerLike } from "../runtime.js";
import { abortController, type MessageOf, type TabMessage, type TabMessageBody } from "./messages.js";

export interface ElectorHooks {
  post(message: TabMessageBody): void;
  /** This tab leads now. */
  elected(): void;
  /** This tab no longer leads (heartbeat election only; a lock is held until `stop`). */
  deposed(): void;
  /** Another tab leads, or (null) nobody is known to lead. */
  leader(id: string | null): void;
}

export interface Elector {
  start(): void;
  stop(): void;
  receive(message: TabMessage): void;
}

type ElectionMessage = MessageOf<"discover" | "leader" | "claim" | "resign">;

export class LockElector implements Elector {
  private leading = false;
  private leaderId: string | null = null;
  private term = 0;
  private stopped = false;
  private release: () => void = () => {};
  /** Tabs that resigned: a late announcement of theirs is stale. */
  private readonly resigned = new Set<string>();

  constructor(
    private readonly id: string,
    private readonly locks: LockManagerLike,
    private readonly lockName: string,
    private readonly hooks: ElectorHooks,
  ) {}

  start(): void {
    this.hooks.post({ kind: "discover" });
    const controller = abortController();
    this.release = () => controller?.abort();
    this.locks
      .request(this.lockName, controller ? { signal: controller.signal } : {}, () => {
        if (this.stopped) return undefined;
        return new Promise<void>((resolve) => {
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

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.leading) {
      this.leading = false;
      this.hooks.post({ kind: "resign" });
    }
    this.release();
  }

  receive(message: TabMessage): void {
    if (message.from === this.id || this.stopped) return;
    const m = message as ElectionMessage;
    switch (m.kind) {
      case "discover":
        if (this.leading) this.announce();
        break;
      case "leader":
        this.term = Math.max(this.term, m.term);
        // The lock makes one leader at a time: the latest announcement is the one.
        if (this.leading || m.from === this.leaderId || this.resigned.has(m.from)) return;
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

  private announce(): void {
    this.hooks.post({ kind: "leader", term: this.term });
  }
}

export interface LeaseTimings {
  heartbeatMs: number;
  timeoutMs: number;
  claimMs: number;
}

export const LEASE_TIMINGS: LeaseTimings = { heartbeatMs: 400, timeoutMs: 1500, claimMs: 250 };

interface Rank {
  term: number;
  id: string;
}

/** Higher term wins, then the smaller id. */
function better(a: Rank, b: Rank): boolean {
  return a.term > b.term || (a.term === b.term && a.id < b.id);
}

export class LeaseElector implements Elector {
  private leading = false;
  private leaderId: string | null = null;
  private leaderTerm = 0;
  private lastHeard = 0;
  private maxTerm = 0;
  private claimTerm: number | null = null;
  private stopped = true;
  private readonly heartbeat: Timer;
  private readonly watchdog: Timer;
  private readonly claimTimer: Timer;

  constructor(
    private readonly id: string,
    private readonly clock: Clock,
    private readonly hooks: ElectorHooks,
    private readonly timings: LeaseTimings = LEASE_TIMINGS,
  ) {
    this.heartbeat = new Timer(clock);
    this.watchdog = new Timer(clock);
    this.claimTimer = new Timer(clock);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.hooks.post({ kind: "discover" });
    // Nobody answered the discover in time: nobody leads.
    this.claimTimer.start(this.timings.claimMs, () => {
      if (!this.leading && this.leaderId === null) this.claim();
    });
    this.watch();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.heartbeat.cancel();
    this.watchdog.cancel();
    this.claimTimer.cancel();
    if (this.leading) {
      this.leading = false;
      this.hooks.post({ kind: "resign" });
    }
  }

  receive(message: TabMessage): void {
    if (message.from === this.id || this.stopped) return;
    const m = message as ElectionMessage;
    switch (m.kind) {
      case "discover":
        if (this.leading) this.announce();
        break;
      case "leader":
        this.heardLeader(m.from, m.term);
        break;
      case "claim":
        this.maxTerm = Math.max(this.maxTerm, m.term);
        if (this.leading) {
          this.announce();
        } else if (this.claimTerm !== null && better({ term: m.term, id: m.from }, { term: this.claimTerm, id: this.id })) {
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

  private heardLeader(from: string, term: number): void {
    this.maxTerm = Math.max(this.maxTerm, term);
    const now = this.clock.now();
    if (this.leading) {
      if (better({ term, id: from }, { term: this.leaderTerm, id: this.id })) {
        this.leading = false;
        this.heartbeat.cancel();
        this.hooks.deposed();
        this.follow(from, term, now);
      } else {
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

  private follow(id: string, term: number, now: number): void {
    this.leaderId = id;
    this.leaderTerm = term;
    this.lastHeard = now;
    this.hooks.leader(id);
  }

  private watch(): void {
    this.watchdog.start(this.timings.heartbeatMs, () => {
      if (!this.leading && this.claimTerm === null) {
        if (this.leaderId !== null && this.clock.now() - this.lastHeard > this.timings.timeoutMs) {
          this.leaderId = null;
          this.hooks.leader(null);
          this.claim();
        } else if (this.leaderId === null && !this.claimTimer.pending) {
          this.claim();
        }
      }
      this.watch();
    });
  }

  private claim(): void {
    if (this.stopped || this.leading) return;
    const term = this.maxTerm + 1;
    this.claimTerm = term;
    this.hooks.post({ kind: "claim", term });
    this.claimTimer.start(this.timings.claimMs, () => {
      if (this.claimTerm === term) this.lead(term);
    });
  }

  private lead(term: number): void {
    this.claimTerm = null;
    this.leading = true;
    this.leaderId = this.id;
    this.leaderTerm = term;
    this.maxTerm = Math.max(this.maxTerm, term);
    this.hooks.elected();
    this.announce();
    const beat = (): void => {
      this.heartbeat.start(this.timings.heartbeatMs, () => {
        this.announce();
        beat();
      });
    };
    beat();
  }

  private announce(): void {
    this.hooks.post({ kind: "leader", term: this.leaderTerm });
  }
}

