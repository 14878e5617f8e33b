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
import { Timer } from "../runtime.js";
import { abortController } from "./messages.js";
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
