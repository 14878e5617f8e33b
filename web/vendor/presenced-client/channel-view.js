/**
 * The client's picture of one channel: the member map built from `sync`
 * chunks and kept current by `join`/`update`/`leave`/`diff` frames checked by
 * `seq`, the latest occupancy, and the listeners of the channel's events.
 */
import { Emitter } from "./emitter.js";
export class ChannelView {
    constructor() {
        this.events = new Emitter();
        this.members = new Map();
        this.list = null;
        this.occupancyValue = null;
        /** Snapshot being assembled from `sync` chunks. */
        this.incoming = null;
        this.seq = 0;
        /** False until a complete snapshot arrived, and again after a gap or a lost connection. */
        this.live = false;
    }
    /** Members as a stable array: the same array until the member set changes. */
    memberList() {
        this.list ?? (this.list = [...this.members.values()]);
        return this.list;
    }
    occupancy() {
        return this.occupancyValue;
    }
    /** The members and their `seq` while the view is live; null while it waits for a snapshot. */
    snapshot() {
        return this.live ? { seq: this.seq, members: this.memberList() } : null;
    }
    /** Whether a complete snapshot has been received since the last gap or reconnect. */
    get synced() {
        return this.live;
    }
    applySync(frame) {
        if (!this.incoming || this.incoming.seq !== frame.seq) {
            this.incoming = { seq: frame.seq, members: new Map() };
        }
        for (const member of frame.members)
            this.incoming.members.set(member.user, member);
        if (frame.more)
            return;
        this.members = this.incoming.members;
        this.seq = frame.seq;
        this.incoming = null;
        this.live = true;
        this.changed();
    }
    applyEvent(frame) {
        if (!this.live || frame.seq <= this.seq)
            return "ignored";
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
                for (const member of frame.joins)
                    this.put(member, "join");
                for (const member of frame.updates)
                    this.put(member, "update");
                for (const user of frame.leaves)
                    this.remove(user, undefined);
                break;
        }
        this.changed();
        return "applied";
    }
    applyOccupancy(occupancy) {
        this.occupancyValue = { members: occupancy.members, connections: occupancy.connections };
        this.events.emit("occupancy", this.occupancyValue);
    }
    /** The connection dropped: keep showing the last members, but wait for a fresh snapshot. */
    suspend() {
        this.live = false;
        this.incoming = null;
    }
    /** The channel is no longer subscribed: nothing is known about it any more. */
    reset() {
        this.suspend();
        this.occupancyValue = null;
        if (this.members.size === 0)
            return;
        this.members = new Map();
        this.changed();
    }
    put(member, event) {
        this.members.set(member.user, member);
        this.events.emit(event, member);
    }
    remove(user, reason) {
        const member = this.members.get(user);
        this.members.delete(user);
        const event = { user };
        if (reason !== undefined)
            event.reason = reason;
        if (member !== undefined)
            event.member = member;
        this.events.emit("leave", event);
    }
    changed() {
        this.list = null;
        this.events.emit("members", this.memberList());
    }
}
