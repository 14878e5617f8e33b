/**
 * The client's picture of one channel: the member map built from `sync`
 * chunks and kept current by `join`/`update`/`leave`/`diff` frames checked by
 * `seq`, the latest occupancy, and the listeners of the channel's events.
 */
import { Emitter } from "./emitter.js";
import type {
  Json,
  LeaveReason,
  Member,
  MemberData,
  MemberEventFrame,
  Occupancy,
  SyncFrame,
  UnsubscribedReason,
} from "./protocol.js";

export interface LeaveEvent<D = MemberData> {
  user: string;
  /** Absent when the leave came in a coalesced `diff`. */
  reason?: LeaveReason;
  /** The member as last known, if it was known. */
  member?: Member<D>;
}

export interface MessageEvent<M = Json> {
  /** Sending user, or null for a message from the server's HTTP API. */
  from: string | null;
  data: M;
}

/**
 * The server ended this connection's subscription to the channel and its
 * membership (`forbidden`: a token refresh or a resume with narrower rights,
 * or changed channel rules after a restart).
 */
export interface UnsubscribedEvent {
  channel: string;
  reason: UnsubscribedReason;
}

/** A channel's events, with member data of type `D` and messages of type `M`. */
export interface ChannelEvents<D = MemberData, M = Json> {
  /** The whole member list, after any change (including a fresh snapshot). */
  members: Member<D>[];
  join: Member<D>;
  update: Member<D>;
  leave: LeaveEvent<D>;
  occupancy: Occupancy;
  message: MessageEvent<M>;
  /** The server took the channel away: members are cleared and nothing asks for it again until `subscribe`/`enter`. */
  unsubscribed: UnsubscribedEvent;
}

/** What became of a member event: applied, ignored (old or before a snapshot), or a gap was found. */
export type EventOutcome = "applied" | "ignored" | "gap";

export class ChannelView {
  readonly events = new Emitter<ChannelEvents>();
  private members = new Map<string, Member>();
  private list: Member[] | null = null;
  private occupancyValue: Occupancy | null = null;
  /** Snapshot being assembled from `sync` chunks. */
  private incoming: { seq: number; members: Map<string, Member> } | null = null;
  private seq = 0;
  /** False until a complete snapshot arrived, and again after a gap or a lost connection. */
  private live = false;

  /** Members as a stable array: the same array until the member set changes. */
  memberList(): Member[] {
    this.list ??= [...this.members.values()];
    return this.list;
  }

  occupancy(): Occupancy | null {
    return this.occupancyValue;
  }

  /** The members and their `seq` while the view is live; null while it waits for a snapshot. */
  snapshot(): { seq: number; members: Member[] } | null {
    return this.live ? { seq: this.seq, members: this.memberList() } : null;
  }

  /** Whether a complete snapshot has been received since the last gap or reconnect. */
  get synced(): boolean {
    return this.live;
  }

  applySync(frame: SyncFrame): void {
    if (!this.incoming || this.incoming.seq !== frame.seq) {
      this.incoming = { seq: frame.seq, members: new Map() };
    }
    for (const member of frame.members) this.incoming.members.set(member.user, member);
    if (frame.more) return;
    this.members = this.incoming.members;
    this.seq = frame.seq;
    this.incoming = null;
    this.live = true;
    this.changed();
  }

  applyEvent(frame: MemberEventFrame): EventOutcome {
    if (!this.live || frame.seq <= this.seq) return "ignored";
    if (frame.seq !== this.seq + 1) {
      this.live = false;
      return "gap";
    }
    this.seq = frame.seq;
    switch (frame.t) {
      case "join":
        this.put(frame.member, "join");
        break;
      case "update":
        this.put(frame.member, "update");
        break;
      case "leave":
        this.remove(frame.user, frame.reason);
        break;
      case "diff":
        for (const member of frame.joins) this.put(member, "join");
        for (const member of frame.updates) this.put(member, "update");
        for (const user of frame.leaves) this.remove(user, undefined);
        break;
    }
    this.changed();
    return "applied";
  }

  applyOccupancy(occupancy: Occupancy): void {
    this.occupancyValue = { members: occupancy.members, connections: occupancy.connections };
    this.events.emit("occupancy", this.occupancyValue);
  }

  /** The connection dropped: keep showing the last members, but wait for a fresh snapshot. */
  suspend(): void {
    this.live = false;
    this.incoming = null;
  }

  /** The channel is no longer subscribed: nothing is known about it any more. */
  reset(): void {
    this.suspend();
    this.occupancyValue = null;
    if (this.members.size === 0) return;
    this.members = new Map();
    this.changed();
  }

  private put(member: Member, event: "join" | "update"): void {
    this.members.set(member.user, member);
    this.events.emit(event, member);
  }

  private remove(user: string, reason: LeaveReason | undefined): void {
    const member = this.members.get(user);
    this.members.delete(user);
    const event: LeaveEvent = { user };
    if (reason !== undefined) event.reason = reason;
    if (member !== undefined) event.member = member;
    this.events.emit("leave", event);
  }

  private changed(): void {
    this.list = null;
    this.events.emit("members", this.memberList());
  }
}
