import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createClient, type PresenceClient, type PresenceError } from "../src/index.js";
import type { StorageLike } from "../src/index.js";
import { FakeWebSocket, member } from "./helpers.js";
import { shareAcrossTabs } from "../src/share/index.js";
import { FakeBrowser, settle, type FakeTab } from "./tabs.js";

/** Tabs of one browser, each with a client, and the leader's socket welcomed. */
async function tabs(count: number, browser = new FakeBrowser()) {
  const list: FakeTab[] = [];
  const clients: PresenceClient[] = [];
  for (let i = 0; i < count; i++) {
    const tab = browser.tab();
    list.push(tab);
    clients.push(tab.client());
    await settle();
  }
  browser.ws.welcome();
  await settle();
  return { browser, tabs: list, clients };
}

/** Plays the server for a `subscribe` or `enter`: snapshot, then `ok`. */
function answerWithSnapshot(ws: FakeWebSocket, channel: string, members: object[], seq = 0): void {
  for (const frame of ws.sent) {
    if (frame.id === undefined || (frame.t !== "subscribe" && frame.t !== "enter") || frame.channel !== channel) continue;
    ws.receive({ t: "sync", channel, seq, members, more: false });
  }
  ws.okAll();
}

class MemoryStorage implements StorageLike {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

function errorsOf(client: PresenceClient): PresenceError[] {
  const errors: PresenceError[] = [];
  client.on("error", (error) => errors.push(error));
  return errors;
}

describe("shareAcrossTabs", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("two tabs share one socket; both are connected as the same user", async () => {
    const { browser, tabs: [a, b], clients: [ca, cb] } = await tabs(2);
    expect(browser.sockets).toHaveLength(1);
    expect(a!.sockets).toHaveLength(1);
    expect(b!.sockets).toHaveLength(0);
    expect(browser.ws.hello()).toMatchObject({ t: "hello", token: "token-1" });
    expect(ca!.state).toBe("connected");
    expect(cb!.state).toBe("connected");
    expect(cb!.user).toBe("alice");
    ca!.release();
    cb!.release();
  });

  it("three tabs share one socket", async () => {
    const { browser, clients } = await tabs(3);
    expect(browser.sockets).toHaveLength(1);
    expect(clients.map((c) => c.state)).toEqual(["connected", "connected", "connected"]);
    for (const c of clients) c.release();
  });

  it("a follower's subscribe, enter and update go through the leader's socket and resolve on the server's reply", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const room = cb!.channel("room:1");
    const members: unknown[] = [];
    room.on("members", (list) => members.push(list.map((m) => m.user)));
    const entered = room.enter({ name: "Alice" });
    await settle();
    expect(ws.frames()).toMatchObject([{ t: "enter", channel: "room:1", data: { name: "Alice" } }]);
    answerWithSnapshot(ws, "room:1", [member("alice", { name: "Alice" }), member("bob")], 3);
    await settle();
    await expect(entered).resolves.toBeUndefined();
    expect(room.members().map((m) => m.user)).toEqual(["alice", "bob"]);
    ws.receive({ t: "leave", channel: "room:1", seq: 4, user: "bob", reason: "left" });
    await settle();
    expect(room.members().map((m) => m.user)).toEqual(["alice"]);
    expect(members).toEqual([["alice", "bob"], ["alice"]]);

    const updated = room.update({ name: "Al" });
    await settle();
    expect(ws.frames("update")).toMatchObject([{ channel: "room:1", data: { name: "Al" } }]);
    ws.okAll();
    await settle();
    await expect(updated).resolves.toBeUndefined();
    // The leader tab's own client saw nothing of it.
    expect(ca!.channel("room:1").members()).toEqual([]);
    ca!.release();
    cb!.release();
  });

  it("a follower's failed request rejects with the server's typed error, reported in that tab only", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const leaderErrors = errorsOf(ca!);
    const followerErrors = errorsOf(cb!);
    const room = cb!.channel("room:1");
    void room.enter({ name: "A" });
    await settle();
    answerWithSnapshot(ws, "room:1", [member("alice", { name: "A" })]);
    await settle();

    const refused = room.update({ name: "B".repeat(3000) });
    await settle();
    const frame = ws.frames("update")[0]!;
    ws.reply(frame, { t: "error", code: "too_large", message: "member data over 2048 bytes" });
    await settle();
    await expect(refused).rejects.toMatchObject({ name: "PresenceError", code: "too_large", message: "member data over 2048 bytes" });
    expect(followerErrors.map((e) => e.code)).toEqual(["too_large"]);
    expect(leaderErrors).toEqual([]);

    const forbidden = cb!.channel("secret:1").subscribe();
    await settle();
    ws.reply(ws.frames("subscribe").find((f) => f.channel === "secret:1")!, {
      t: "error",
      code: "forbidden",
      message: "not allowed",
    });
    await settle();
    await expect(forbidden).rejects.toMatchObject({ code: "forbidden" });

    // update without enter is refused like the server would.
    await expect(cb!.channel("room:2").update({ x: 1 })).rejects.toMatchObject({ code: "not_member" });
    ca!.release();
    cb!.release();
  });

  it("a follower watches users and gets their statuses; the other tab gets none", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const seenByLeader = vi.fn();
    ca!.on("presence", seenByLeader);
    const seen: unknown[] = [];
    cb!.on("presence", (changed) => seen.push(changed));
    const watching = cb!.watch(["bob", "carol"]);
    await settle();
    expect(ws.frames("watch")).toMatchObject([{ users: ["bob", "carol"] }]);
    const online = { status: "online", since: "2024-01-01T00:00:00Z", last_seen: "2024-01-01T00:00:00Z" };
    const offline = { status: "offline", since: null, last_seen: null };
    ws.receive({ t: "presence", users: { bob: online, carol: offline } });
    ws.okAll();
    await settle();
    await expect(watching).resolves.toBeUndefined();
    expect(cb!.status("bob")).toEqual(online);
    expect(cb!.status("carol")).toEqual(offline);
    ws.receive({ t: "presence", users: { bob: { ...online, status: "away" } } });
    await settle();
    expect(cb!.status("bob")?.status).toBe("away");
    expect(seen).toHaveLength(2);
    expect(seenByLeader).not.toHaveBeenCalled();

    // The leader tab watching bob too gets the status it already has, without a second watch.
    await ca!.watch(["bob"]).then(() => undefined);
    expect(ca!.status("bob")?.status).toBe("away");
    expect(ws.frames("watch")).toHaveLength(1);
    ca!.release();
    cb!.release();
  });

  it("union reference counting: one subscription for two tabs, unsubscribed only after the last lets go (and its delay)", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const inA = ca!.channel("room:1");
    void inA.subscribe();
    await settle();
    answerWithSnapshot(ws, "room:1", [member("bob")], 7);
    await settle();
    expect(inA.members().map((m) => m.user)).toEqual(["bob"]);

    // The second tab gets the members from the leader's view: no second subscribe.
    const inB = cb!.channel("room:1");
    await inB.subscribe();
    expect(inB.members().map((m) => m.user)).toEqual(["bob"]);
    expect(ws.summary()).toEqual(["subscribe:room:1"]);
    // Both follow the live events (seq continues from the leader's snapshot).
    ws.receive({ t: "join", channel: "room:1", seq: 8, member: member("carol") });
    await settle();
    expect(inA.members().map((m) => m.user)).toEqual(["bob", "carol"]);
    expect(inB.members().map((m) => m.user)).toEqual(["bob", "carol"]);

    inA.release();
    vi.advanceTimersByTime(1_500);
    await settle();
    vi.advanceTimersByTime(10_000);
    await settle();
    expect(ws.summary()).toEqual(["subscribe:room:1"]);

    inB.release();
    vi.advanceTimersByTime(1_499);
    await settle();
    expect(ws.summary()).toEqual(["subscribe:room:1"]);
    vi.advanceTimersByTime(1);
    await settle();
    expect(ws.summary()).toEqual(["subscribe:room:1", "unsubscribe:room:1"]);
    ca!.release();
    cb!.release();
  });

  it("entries and watches are counted per tab; the last leave and unwatch go to the server", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const inA = ca!.channel("room:1");
    const inB = cb!.channel("room:1");
    void inA.enter({ name: "A" });
    await settle();
    answerWithSnapshot(ws, "room:1", [member("alice", { name: "A" })]);
    await settle();
    void inB.enter({ name: "A" });
    void cb!.watch(["bob"]);
    void ca!.watch(["bob"]);
    await settle();
    ws.okAll();
    await settle();
    expect(ws.summary()).toEqual(["enter:room:1", "watch"]);
    // Other data from the second tab: last writer wins, as on the server.
    void inB.enter({ name: "B" });
    await settle();
    expect(ws.frames("update")).toMatchObject([{ channel: "room:1", data: { name: "B" } }]);
    ws.okAll();
    await settle();

    await inA.leave();
    expect(ws.summary()).toEqual(["enter:room:1", "watch", "update:room:1"]);
    const left = inB.leave();
    await settle();
    expect(ws.summary()).toEqual(["enter:room:1", "watch", "update:room:1", "leave:room:1"]);
    ws.okAll();
    await left;

    ca!.unwatch(["bob"]);
    vi.advanceTimersByTime(1_500);
    await settle();
    expect(ws.frames("unwatch")).toEqual([]);
    cb!.unwatch(["bob"]);
    vi.advanceTimersByTime(1_500);
    await settle();
    expect(ws.frames("unwatch")).toMatchObject([{ users: ["bob"] }]);
    ca!.release();
    cb!.release();
  });

  it("occupancy goes to the tabs that asked for it; member events to every subscribed tab", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const inA = ca!.channel("lobby");
    const inB = cb!.channel("lobby");
    void inA.subscribe();
    await settle();
    answerWithSnapshot(ws, "lobby", []);
    await settle();
    void inB.subscribe({ occupancy: true });
    await settle();
    // Occupancy is new for the union: the server is asked for it.
    expect(ws.frames("subscribe")).toMatchObject([{ channel: "lobby" }, { channel: "lobby", occupancy: true }]);
    answerWithSnapshot(ws, "lobby", [member("bob")], 1);
    ws.receive({ t: "occupancy", channel: "lobby", members: 1, connections: 1 });
    await settle();
    expect(inB.occupancy()).toEqual({ members: 1, connections: 1 });
    expect(inA.occupancy()).toBeNull();
    expect(inA.members().map((m) => m.user)).toEqual(["bob"]);
    expect(inB.members().map((m) => m.user)).toEqual(["bob"]);
    ca!.release();
    cb!.release();
  });

  it("the user is away only when every tab is away", async () => {
    const { browser, tabs: [a, b], clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    await Promise.all([ca!.setStatus("away"), settle()]);
    expect(ca!.ownStatus).toBe("away");
    expect(ws.frames("status")).toEqual([]);
    const away = cb!.setStatus("away");
    await settle();
    expect(ws.frames("status")).toMatchObject([{ status: "away" }]);
    ws.okAll();
    await away;
    const online = ca!.setStatus("online");
    await settle();
    expect(ws.frames("status")).toMatchObject([{ status: "away" }, { status: "online" }]);
    ws.okAll();
    await online;
    void cb!.setStatus("online");
    await settle();

    // Automatic away: hidden tabs for a minute.
    a!.hide();
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(ws.frames("status")).toHaveLength(2);
    b!.hide();
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(ws.frames("status").map((f) => f.status)).toEqual(["away", "online", "away"]);
    ws.okAll();
    b!.show();
    await settle();
    expect(ws.frames("status").map((f) => f.status)).toEqual(["away", "online", "away", "online"]);
    ca!.release();
    cb!.release();
  });

  it("a follower publishes through the leader; the leader tab's subscribers get the message", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    const inA = ca!.channel("room:1");
    const messages: unknown[] = [];
    inA.on("message", (m) => messages.push(m));
    void inA.subscribe();
    await settle();
    answerWithSnapshot(ws, "room:1", []);
    await settle();
    const sent = cb!.channel("room:1").publish({ hello: 1 });
    await settle();
    expect(ws.frames("publish")).toMatchObject([{ channel: "room:1", data: { hello: 1 } }]);
    ws.okAll();
    await sent;
    await settle();
    expect(messages).toEqual([{ from: "alice", data: { hello: 1 } }]);
    ws.receive({ t: "message", channel: "room:1", from: "bob", data: "hi" });
    await settle();
    expect(messages).toEqual([{ from: "alice", data: { hello: 1 } }, { from: "bob", data: "hi" }]);

    const refused = cb!.channel("room:1").publish("x");
    await settle();
    ws.reply(ws.frames("publish")[1]!, { t: "error", code: "forbidden", message: "publishing is off" });
    await expect(refused).rejects.toMatchObject({ code: "forbidden" });
    ca!.release();
    cb!.release();
  });

  it("the leader closes: a follower becomes leader, opens one new socket without resume and re-sends the union", async () => {
    const { browser, tabs: [a, b, c], clients: [ca, cb, cc] } = await tabs(3);
    const first = browser.ws;
    void ca!.channel("room:9").enter({ name: "A" });
    void cb!.channel("room:1").enter({ name: "B" });
    void cc!.channel("lobby").subscribe({ occupancy: true });
    void cc!.watch(["bob"]);
    void cb!.setStatus("away");
    await settle();
    answerWithSnapshot(first, "room:9", [member("alice")]);
    answerWithSnapshot(first, "room:1", [member("alice"), member("bob")]);
    answerWithSnapshot(first, "lobby", [member("carol")]);
    await settle();
    expect(first.summary()).toEqual(["enter:room:9", "enter:room:1", "subscribe:lobby", "watch"]);
    const states: string[] = [];
    cb!.on("state", (s) => states.push(s));

    ca!.release();
    vi.advanceTimersByTime(1_500);
    await settle();
    // Tab A let go of room:9 before closing; it closed its socket without bye.
    expect(first.summary()).toEqual(["enter:room:9", "enter:room:1", "subscribe:lobby", "watch", "unsubscribe:room:9"]);
    expect(first.closedByClient).not.toBeNull();
    expect(first.frames("bye")).toEqual([]);
    expect(browser.sockets).toHaveLength(2);
    expect(b!.sockets).toHaveLength(1);
    expect(c!.sockets).toHaveLength(0);
    expect(a!.sockets).toHaveLength(1);
    const second = browser.ws;
    second.open();
    expect(second.hello()).toEqual({ t: "hello", token: "token-1", client: expect.any(String) });
    second.welcome({ session: "s-2" });
    await settle();
    expect(second.summary().sort()).toEqual(["enter:room:1", "subscribe:lobby", "watch"]);
    expect(second.frames("enter")).toMatchObject([{ data: { name: "B" } }]);
    expect(second.frames("subscribe")).toMatchObject([{ occupancy: true }]);
    expect(second.frames("watch")).toMatchObject([{ users: ["bob"] }]);
    // B is away but C is not: the user is online, which a fresh connection is anyway.
    expect(second.frames("status")).toEqual([]);
    second.okAll();
    await settle();
    // Once C is away too, the new leader says so.
    void cc!.setStatus("away");
    await settle();
    expect(second.frames("status")).toMatchObject([{ status: "away" }]);
    expect(states).toEqual(["reconnecting", "connected"]);
    expect(cb!.state).toBe("connected");
    expect(cc!.state).toBe("connected");

    // The views resync from the fresh snapshots.
    answerWithSnapshot(second, "room:1", [member("alice"), member("dave")]);
    answerWithSnapshot(second, "lobby", [member("erin")]);
    await settle();
    expect(cb!.channel("room:1").members().map((m) => m.user)).toEqual(["alice", "dave"]);
    expect(cc!.channel("lobby").members().map((m) => m.user)).toEqual(["erin"]);
    cb!.release();
    cc!.release();
  });

  it("the leader crashes: the next tab takes over at once, the others follow it", async () => {
    const { browser, tabs: [a, b, c], clients: [, cb, cc] } = await tabs(3);
    const first = browser.ws;
    void cb!.channel("room:1").enter({ name: "B" });
    void cc!.channel("room:2").enter({ name: "C" });
    await settle();
    first.okAll();
    await settle();
    a!.crash();
    await settle();
    expect(browser.sockets).toHaveLength(2);
    expect(b!.sockets).toHaveLength(1);
    const second = browser.ws;
    second.welcome();
    await settle();
    expect(second.hello()?.resume).toBeUndefined();
    expect(second.summary().sort()).toEqual(["enter:room:1", "enter:room:2"]);
    second.okAll();
    await settle();
    expect(cb!.state).toBe("connected");
    expect(cc!.state).toBe("connected");
    expect(c!.sockets).toHaveLength(0);
    // No more sockets later on.
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(browser.sockets).toHaveLength(2);
    cb!.release();
    cc!.release();
  });

  it("a follower that crashes keeps its share for the server's grace window", async () => {
    const { browser, tabs: [, b], clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    void ca!.channel("lobby").subscribe();
    void cb!.channel("room:5").enter({ name: "B" });
    void cb!.setStatus("away");
    await settle();
    ws.okAll();
    await settle();
    expect(ws.summary()).toEqual(["subscribe:lobby", "enter:room:5"]);
    b!.crash();
    await settle();
    vi.advanceTimersByTime(14_999);
    await settle();
    expect(ws.summary()).toEqual(["subscribe:lobby", "enter:room:5"]);
    vi.advanceTimersByTime(1);
    await settle();
    expect(ws.summary()).toEqual(["subscribe:lobby", "enter:room:5", "unsubscribe:room:5"]);
    // The leader tab, still online, now is every tab: nothing changes for the status.
    expect(ws.frames("status")).toEqual([]);
    ca!.release();
  });

  it("a follower that closes cleanly gives back its share at once", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const ws = browser.ws;
    void ca!.setStatus("away");
    await settle();
    expect(ws.frames("status")).toEqual([]);
    cb!.release();
    vi.advanceTimersByTime(1_500);
    await settle();
    // Only the away tab is left.
    expect(ws.frames("status")).toMatchObject([{ status: "away" }]);
    ca!.release();
  });

  it("logout in any tab logs out everywhere", async () => {
    const { browser, clients: [ca, cb, cc] } = await tabs(3);
    const ws = browser.ws;
    const kicked = vi.fn();
    ca!.on("kicked", kicked);
    cc!.logout();
    await settle();
    expect(ws.frames().map((f) => f.t)).toEqual(["bye"]);
    expect(ws.closedByClient).not.toBeNull();
    expect([ca!.state, cb!.state, cc!.state]).toEqual(["disconnected", "disconnected", "disconnected"]);
    await expect(cb!.channel("x").subscribe()).rejects.toMatchObject({ code: "unavailable" });
    vi.advanceTimersByTime(120_000);
    await settle();
    expect(browser.sockets).toHaveLength(1);
    expect(kicked).not.toHaveBeenCalled();
    ca!.release();
    cb!.release();
  });

  it("logout in the leader tab logs out the followers too", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    ca!.logout();
    await settle();
    expect(browser.ws.frames().map((f) => f.t)).toEqual(["bye"]);
    expect(cb!.state).toBe("disconnected");
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(browser.sockets).toHaveLength(1);
    cb!.release();
  });

  it("a kick reaches every tab", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const kicked = vi.fn();
    cb!.on("kicked", kicked);
    browser.ws.serverClose(4409, "disconnected by admin");
    await settle();
    expect(kicked).toHaveBeenCalledWith({ code: 4409, reason: "disconnected by admin" });
    expect([ca!.state, cb!.state]).toEqual(["disconnected", "disconnected"]);
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(browser.sockets).toHaveLength(1);
  });

  it("a dropped socket: every tab reconnects with the leader, which resumes; nothing is re-sent", async () => {
    const { browser, clients: [ca, cb] } = await tabs(2);
    const first = browser.ws;
    first.welcome({ session: "s-1" });
    const room = cb!.channel("room:1");
    void room.enter({ name: "B" });
    await settle();
    answerWithSnapshot(first, "room:1", [member("alice")], 2);
    await settle();
    const states: string[] = [];
    cb!.on("state", (s) => states.push(s));
    first.serverClose(1006);
    await settle();
    expect(cb!.state).toBe("reconnecting");
    vi.advanceTimersByTime(500);
    await settle();
    const second = browser.ws;
    expect(browser.sockets).toHaveLength(2);
    second.welcome({ resumed: true });
    expect(second.hello()?.resume).toBeDefined();
    await settle();
    expect(second.summary()).toEqual([]);
    second.receive({ t: "sync", channel: "room:1", seq: 5, members: [member("alice"), member("bob")], more: false });
    await settle();
    expect(room.members().map((m) => m.user)).toEqual(["alice", "bob"]);
    expect(states).toEqual(["reconnecting", "connected"]);
    ca!.release();
    cb!.release();
  });

  it("without Web Locks, tabs elect a leader by heartbeats and a follower takes over after the leader crashed", async () => {
    const browser = new FakeBrowser({ locks: null });
    const a = browser.tab();
    const ca = a.client();
    vi.advanceTimersByTime(1_000);
    await settle();
    const b = browser.tab();
    const cb = b.client();
    await settle();
    vi.advanceTimersByTime(1_000);
    await settle();
    expect(browser.sockets).toHaveLength(1);
    expect(a.sockets).toHaveLength(1);
    browser.ws.welcome();
    await settle();
    expect([ca.state, cb.state]).toEqual(["connected", "connected"]);
    void cb.channel("room:1").enter({ name: "B" });
    await settle();
    browser.ws.okAll();
    // Stays one socket while both live.
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(500);
      await settle();
    }
    expect(browser.sockets).toHaveLength(1);

    a.crash();
    for (let i = 0; i < 10 && browser.sockets.length === 1; i++) {
      vi.advanceTimersByTime(250);
      await settle();
    }
    expect(browser.sockets).toHaveLength(2);
    expect(b.sockets).toHaveLength(1);
    browser.ws.welcome();
    await settle();
    expect(browser.ws.summary()).toEqual(["enter:room:1"]);
    expect(cb.state).toBe("connected");
    cb.release();
  });

  it("without a BroadcastChannel the option falls back to a connection of the page's own", async () => {
    const browser = new FakeBrowser({ BroadcastChannel: null });
    const client = browser.tab().client();
    expect(browser.sockets).toHaveLength(1);
    browser.ws.welcome();
    expect(client.state).toBe("connected");
    void client.channel("room:1").subscribe();
    expect(browser.ws.summary()).toEqual(["subscribe:room:1"]);
    client.release();
  });

  it("in Node the default is a direct connection", () => {
    const sockets: FakeWebSocket[] = [];
    const client = createClient({
      url: "ws://tabs.test/node/v1/ws",
      token: "t",
      shareAcrossTabs,
      storage: null,
      window: null,
      document: null,
      WebSocket: class extends FakeWebSocket {
        constructor(u: string) {
          super(u);
          sockets.push(this);
        }
      },
    });
    expect(sockets).toHaveLength(1);
    client.release();
  });

  it("a lone tab reloaded resumes its session; a tab that followed another leader never resumes its old one", async () => {
    const browser = new FakeBrowser();
    const storageA = new MemoryStorage();
    const a = browser.tab({ storage: storageA });
    let ca = a.client();
    await settle();
    browser.ws.welcome({ session: "s-a1" });
    await settle();
    expect(storageA.items.get(`presenced:session:${browser.url}`)).toBe("s-a1");

    // A reload of the only tab: same sessionStorage, a new page.
    a.crash();
    const reloaded = browser.tab({ storage: storageA });
    ca = reloaded.client();
    await settle();
    expect(browser.sockets).toHaveLength(2);
    browser.ws.open();
    expect(browser.ws.hello()?.resume).toBe("s-a1");
    browser.ws.welcome({ session: "s-a2", resumed: true });
    await settle();

    // Another tab takes over while the first one lets go, then the first one follows it...
    const b = browser.tab({ storage: new MemoryStorage() });
    const cb = b.client();
    await settle();
    ca.release();
    vi.advanceTimersByTime(1_500);
    await settle();
    expect(b.sockets).toHaveLength(1);
    browser.ws.welcome({ session: "s-b1" });
    await settle();
    ca = reloaded.client();
    await settle();
    expect(ca.state).toBe("connected");
    // ...and leads again when that tab closes: its stored session is not the group's.
    cb.release();
    vi.advanceTimersByTime(1_500);
    await settle();
    expect(reloaded.sockets).toHaveLength(2);
    browser.ws.open();
    expect(browser.ws.hello()?.resume).toBeUndefined();
    ca.release();
  });

  it("without Web Locks, a follower that stops saying it is alive loses its share after the grace window", async () => {
    const browser = new FakeBrowser({ locks: null });
    const a = browser.tab();
    const ca = a.client();
    vi.advanceTimersByTime(1_000);
    await settle();
    const b = browser.tab();
    const cb = b.client();
    await settle();
    vi.advanceTimersByTime(1_000);
    await settle();
    browser.ws.welcome();
    await settle();
    void cb.channel("room:5").enter({ name: "B" });
    await settle();
    browser.ws.okAll();
    b.crash();
    // Missed alives for 5 s, then the grace window of 15 s.
    for (let t = 0; t < 19_000; t += 500) {
      vi.advanceTimersByTime(500);
      await settle();
    }
    expect(browser.ws.summary()).toEqual(["enter:room:5"]);
    for (let t = 0; t < 3_000; t += 500) {
      vi.advanceTimersByTime(500);
      await settle();
    }
    expect(browser.ws.summary()).toEqual(["enter:room:5", "unsubscribe:room:5"]);
    expect(browser.sockets).toHaveLength(1);
    ca.release();
  });

  it("without Web Locks, two tabs that both took the lead settle on one leader and one socket", async () => {
    const browser = new FakeBrowser({ locks: null });
    const [a, b] = [browser.tab(), browser.tab()];
    const ca = a.client();
    const cb = b.client();
    // Neither hears the other before its claim runs out: both lead.
    vi.advanceTimersByTime(1_000);
    expect(browser.sockets).toHaveLength(2);
    for (const ws of browser.sockets) ws.welcome();
    await settle();
    vi.advanceTimersByTime(500);
    await settle();
    const open = browser.openSockets();
    expect(open).toHaveLength(1);
    expect(open[0]!.frames("bye")).toEqual([]);
    expect(browser.sockets.find((ws) => ws !== open[0])!.closedByClient).not.toBeNull();
    expect([ca.state, cb.state]).toEqual(["connected", "connected"]);
    void ca.channel("room:1").subscribe();
    void cb.channel("room:2").subscribe();
    await settle();
    expect(open[0]!.summary().sort()).toEqual(["subscribe:room:1", "subscribe:room:2"]);
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(500);
      await settle();
    }
    expect(browser.sockets).toHaveLength(2);
    ca.release();
    cb.release();
  });
});
