import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { LeaveEvent, Member } from "../src/index.js";
import { flush, member, setup } from "./helpers.js";

function subscribed(channel = "room:1") {
  const h = setup();
  h.ws.welcome();
  const handle = h.client.channel(channel);
  void handle.subscribe();
  return { h, handle };
}

describe("channel state", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("builds the member map from sync chunks and publishes it when the last chunk arrives", () => {
    const { h, handle } = subscribed();
    const updates: Member[][] = [];
    handle.on("members", (m) => updates.push(m));
    h.ws.receive({ t: "sync", channel: "room:1", seq: 7, members: [member("a"), member("b")], more: true });
    expect(handle.members()).toEqual([]);
    expect(updates).toEqual([]);
    h.ws.receive({ t: "sync", channel: "room:1", seq: 7, members: [member("c")], more: false });
    expect(handle.members().map((m) => m.user)).toEqual(["a", "b", "c"]);
    expect(updates).toHaveLength(1);
    h.client.release();
  });

  it("a new snapshot replaces the old one", () => {
    const { h, handle } = subscribed();
    h.ws.receive({ t: "sync", channel: "room:1", seq: 1, members: [member("a"), member("b")], more: false });
    h.ws.receive({ t: "sync", channel: "room:1", seq: 4, members: [member("c")], more: false });
    expect(handle.members().map((m) => m.user)).toEqual(["c"]);
    h.client.release();
  });

  it("applies join, update, leave and diff frames in seq order", () => {
    const { h, handle } = subscribed();
    const joins: string[] = [];
    const leaves: LeaveEvent[] = [];
    const updates: string[] = [];
    handle.on("join", (m) => joins.push(m.user));
    handle.on("leave", (e) => leaves.push(e));
    handle.on("update", (m) => updates.push(`${m.user}:${JSON.stringify(m.data)}`));
    h.ws.receive({ t: "sync", channel: "room:1", seq: 10, members: [member("a")], more: false });
    h.ws.receive({ t: "join", channel: "room:1", seq: 11, member: member("b", { name: "B" }) });
    h.ws.receive({ t: "update", channel: "room:1", seq: 12, member: member("a", { typing: true }) });
    h.ws.receive({ t: "leave", channel: "room:1", seq: 13, user: "b", reason: "timeout" });
    h.ws.receive({
      t: "diff",
      channel: "room:1",
      seq: 14,
      joins: [member("c"), member("d")],
      updates: [member("a", { typing: false })],
      leaves: ["c"],
    });
    expect(joins).toEqual(["b", "c", "d"]);
    expect(updates).toEqual(['a:{"typing":true}', 'a:{"typing":false}']);
    expect(leaves).toEqual([
      { user: "b", reason: "timeout", member: member("b", { name: "B" }) },
      { user: "c", member: member("c") },
    ]);
    expect(handle.members()).toEqual([member("a", { typing: false }), member("d")]);
    h.client.release();
  });

  it("keeps the same members array until something changes", () => {
    const { h, handle } = subscribed();
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("a")], more: false });
    const first = handle.members();
    expect(handle.members()).toBe(first);
    h.ws.receive({ t: "join", channel: "room:1", seq: 1, member: member("b") });
    expect(handle.members()).not.toBe(first);
    h.client.release();
  });

  it("ignores events already covered by the snapshot", () => {
    const { h, handle } = subscribed();
    h.ws.receive({ t: "sync", channel: "room:1", seq: 5, members: [member("a")], more: false });
    h.ws.receive({ t: "leave", channel: "room:1", seq: 5, user: "a", reason: "left" });
    expect(handle.members().map((m) => m.user)).toEqual(["a"]);
    h.client.release();
  });

  it("resubscribes on a seq gap and applies nothing until the fresh snapshot", () => {
    const { h, handle } = subscribed();
    h.ws.okAll();
    h.ws.receive({ t: "sync", channel: "room:1", seq: 3, members: [member("a")], more: false });
    h.ws.receive({ t: "join", channel: "room:1", seq: 5, member: member("x") });
    expect(h.ws.summary()).toEqual(["subscribe:room:1", "subscribe:room:1"]);
    h.ws.receive({ t: "join", channel: "room:1", seq: 6, member: member("y") });
    expect(handle.members().map((m) => m.user)).toEqual(["a"]);
    h.ws.receive({ t: "sync", channel: "room:1", seq: 6, members: [member("a"), member("x"), member("y")], more: false });
    h.ws.receive({ t: "join", channel: "room:1", seq: 7, member: member("z") });
    expect(handle.members().map((m) => m.user)).toEqual(["a", "x", "y", "z"]);
    // Only one resubscribe for one gap.
    expect(h.ws.frames("subscribe")).toHaveLength(2);
    h.client.release();
  });

  it("resubscribes with the occupancy flag it had", () => {
    const h = setup();
    h.ws.welcome();
    void h.client.channel("room:1").subscribe({ occupancy: true });
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [], more: false });
    h.ws.receive({ t: "leave", channel: "room:1", seq: 2, user: "a", reason: "left" });
    expect(h.ws.frames("subscribe")).toMatchObject([
      { channel: "room:1", occupancy: true },
      { channel: "room:1", occupancy: true },
    ]);
    h.client.release();
  });

  it("tracks occupancy and messages", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.subscribe({ occupancy: true });
    const seen: unknown[] = [];
    handle.on("occupancy", (o) => seen.push(o));
    handle.on("message", (m) => seen.push(m));
    expect(handle.occupancy()).toBeNull();
    h.ws.receive({ t: "occupancy", channel: "room:1", members: 3, connections: 5 });
    h.ws.receive({ t: "message", channel: "room:1", from: "bob", data: { emoji: "wave" } });
    expect(handle.occupancy()).toEqual({ members: 3, connections: 5 });
    expect(seen).toEqual([
      { members: 3, connections: 5 },
      { from: "bob", data: { emoji: "wave" } },
    ]);
    h.client.release();
  });

  it("ignores frames for channels it is not subscribed to", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("a")], more: false });
    expect(handle.members()).toEqual([]);
    h.client.release();
  });

  it("tracks statuses of watched users from presence frames", async () => {
    const h = setup();
    h.ws.welcome();
    const changes: unknown[] = [];
    h.client.on("presence", (p) => changes.push(p));
    const watching = h.client.watch(["bob", "carol"]);
    expect(h.ws.frames("watch")).toMatchObject([{ users: ["bob", "carol"] }]);
    const bob = { status: "online", since: "2024-01-01T00:00:00Z", last_seen: "2024-01-01T00:00:00Z" };
    const carol = { status: "offline", since: null, last_seen: null };
    h.ws.receive({ t: "presence", users: { bob, carol, mallory: bob } });
    h.ws.okAll();
    await watching;
    expect(h.client.status("bob")).toEqual(bob);
    expect(h.client.status("carol")).toEqual(carol);
    expect(h.client.status("mallory")).toBeUndefined();
    expect(changes).toEqual([{ bob, carol }]);
    h.client.release();
  });

  it("splits watch requests into chunks of 500 users", () => {
    const h = setup();
    h.ws.welcome();
    const users = Array.from({ length: 1_200 }, (_, i) => `u${i}`);
    void h.client.watch(users);
    expect(h.ws.frames("watch").map((f) => (f.users as string[]).length)).toEqual([500, 500, 200]);
    h.client.release();
  });

  it("rejects update before enter with not_member", async () => {
    const { h, handle } = subscribed();
    await expect(handle.update({ x: 1 })).rejects.toMatchObject({ code: "not_member" });
    h.client.release();
  });

  it("enter, update and leave send the matching frames", async () => {
    const h = setup();
    h.ws.welcome();
    const room = h.client.channel("room:1");
    void room.enter({ name: "A" });
    void room.update({ name: "A", typing: true });
    void room.update({ typing: true, name: "A" });
    void room.leave();
    expect(h.ws.frames()).toMatchObject([
      { t: "enter", channel: "room:1", data: { name: "A" } },
      { t: "update", channel: "room:1", data: { name: "A", typing: true } },
      { t: "leave", channel: "room:1" },
    ]);
    await flush();
    h.client.release();
  });
});
