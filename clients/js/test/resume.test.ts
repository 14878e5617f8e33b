import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { StorageLike } from "../src/index.js";
import { flush, member, setup } from "./helpers.js";

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

/** A client that subscribed, entered, watched and set away on its first connection. */
async function withDesiredState(storage: StorageLike | null = null) {
  const h = setup({ storage });
  h.ws.welcome({ session: "s-1" });
  void h.client.channel("lobby").subscribe({ occupancy: true });
  void h.client.channel("room:1").enter({ name: "Alice" });
  void h.client.watch(["bob"]);
  void h.client.setStatus("away");
  h.ws.okAll();
  await flush();
  return h;
}

describe("resume", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("says hello with the token and no resume token the first time", () => {
    const h = setup();
    h.ws.open();
    expect(h.ws.hello()).toEqual({ t: "hello", token: "token-1", client: expect.stringMatching(/^presenced-js\//) });
    h.client.release();
  });

  it("reconnects with the session from the last welcome", async () => {
    const h = await withDesiredState();
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ t: "hello", token: "token-1", resume: "s-1" });
    h.client.release();
  });

  it("on resumed: true sends nothing again and takes the fresh snapshots", async () => {
    const h = await withDesiredState();
    const lobby = h.client.channel("lobby");
    h.ws.receive({ t: "sync", channel: "lobby", seq: 4, members: [member("a")], more: false });
    h.ws.serverClose(1001);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: true, session: "s-2" });
    expect(h.client.state).toBe("connected");
    expect(h.ws.summary()).toEqual([]);
    // Events before the fresh snapshot belong to the old numbering.
    h.ws.receive({ t: "join", channel: "lobby", seq: 5, member: member("x") });
    expect(lobby.members().map((m) => m.user)).toEqual(["a"]);
    h.ws.receive({ t: "sync", channel: "lobby", seq: 0, members: [member("a"), member("b")], more: false });
    h.ws.receive({ t: "join", channel: "lobby", seq: 1, member: member("c") });
    expect(lobby.members().map((m) => m.user)).toEqual(["a", "b", "c"]);
    h.client.release();
  });

  it("on resumed: false re-sends everything the application asked for", async () => {
    const h = await withDesiredState();
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: false, session: "s-2" });
    expect(h.ws.frames()).toEqual([
      { t: "subscribe", channel: "lobby", occupancy: true, id: expect.any(Number) },
      { t: "enter", channel: "room:1", data: { name: "Alice" }, id: expect.any(Number) },
      { t: "watch", users: ["bob"], id: expect.any(Number) },
      { t: "status", status: "away", id: expect.any(Number) },
    ]);
    h.client.release();
  });

  it("re-sends the latest member data, not the first", async () => {
    const h = await withDesiredState();
    void h.client.channel("room:1").update({ name: "Alice", typing: true });
    h.ws.okAll();
    await flush();
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: false });
    expect(h.ws.frames("enter")).toMatchObject([{ data: { name: "Alice", typing: true } }]);
    h.client.release();
  });

  it("on resumed: true re-sends only what changed while disconnected", async () => {
    const h = await withDesiredState();
    h.ws.serverClose(1006);
    const room = h.client.channel("room:1");
    const updated = room.update({ name: "Alice 2" });
    const lobbyLeft = h.client.channel("lobby");
    void lobbyLeft.subscribe();
    void lobbyLeft.unsubscribe();
    void h.client.setStatus("online");
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: true });
    // The server restored the entry: only the data changed.
    expect(h.ws.frames()).toMatchObject([
      { t: "update", channel: "room:1", data: { name: "Alice 2" } },
      { t: "status", status: "online" },
    ]);
    h.ws.okAll();
    await expect(updated).resolves.toBeUndefined();
    h.client.release();
  });

  it("re-sends on resume what was in flight when the connection dropped", async () => {
    const h = setup();
    h.ws.welcome();
    const entering = h.client.channel("room:1").enter({ name: "A" });
    const watching = h.client.watch(["bob"]);
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: true });
    expect(h.ws.summary()).toEqual(["enter:room:1", "watch"]);
    h.ws.okAll();
    await expect(entering).resolves.toBeUndefined();
    await expect(watching).resolves.toBeUndefined();
    h.client.release();
  });

  it("releases whose frames were lost in flight are re-sent on resume", async () => {
    const h = await withDesiredState();
    const again = h.another();
    h.client.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.summary().slice(-3)).toEqual(["unsubscribe:lobby", "unsubscribe:room:1", "unwatch"]);
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: true });
    expect(h.ws.summary()).toEqual(["unsubscribe:lobby", "unsubscribe:room:1", "unwatch"]);
    again.release();
  });

  it("keeps the session in storage per URL and resumes after a page reload", async () => {
    const storage = new MemoryStorage();
    const h = await withDesiredState(storage);
    expect([...storage.items.values()]).toEqual(["s-1"]);
    expect([...storage.items.keys()][0]).toContain(h.url);
    // A reload: a brand-new client for the same URL, same storage.
    h.client.release();
    vi.advanceTimersByTime(1_500);
    const reloaded = setup({ storage, url: h.url });
    reloaded.ws.open();
    expect(reloaded.ws.hello()).toMatchObject({ resume: "s-1" });
    reloaded.ws.welcome({ session: "s-9", resumed: true });
    expect(storage.getItem([...storage.items.keys()][0]!)).toBe("s-9");
    reloaded.client.release();
  });

  it("works without any storage (Node)", async () => {
    const h = await withDesiredState(null);
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ resume: "s-1" });
    h.client.release();
  });

  it("survives a storage that throws", () => {
    const broken: StorageLike = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("quota");
      },
      removeItem: () => {
        throw new Error("denied");
      },
    };
    const h = setup({ storage: broken });
    h.ws.welcome({ session: "s-1" });
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ resume: "s-1" });
    h.client.release();
  });

  it("after `replaced` reconnects without the resume token", async () => {
    const storage = new MemoryStorage();
    const h = await withDesiredState(storage);
    h.ws.serverClose(1000, "replaced");
    expect(storage.items.size).toBe(0);
    vi.advanceTimersByTime(500);
    h.ws.open();
    expect(h.ws.hello()).not.toHaveProperty("resume");
    h.ws.welcome({ resumed: false });
    expect(h.ws.summary()).toEqual(["subscribe:lobby", "enter:room:1", "watch", "status"]);
    h.client.release();
  });
});

describe("a socket that fails to send", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is dropped, and the operation is applied on the next connection", async () => {
    const h = setup();
    h.ws.welcome();
    const dead = h.ws;
    dead.readyState = 2;
    const entering = h.client.channel("room:1").enter({ name: "A" });
    await flush();
    expect(h.client.state).toBe("reconnecting");
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: true });
    expect(h.ws.summary()).toEqual(["enter:room:1"]);
    h.ws.okAll();
    await expect(entering).resolves.toBeUndefined();
    h.client.release();
  });
});

describe("refused member data", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is not re-sent on reconnect: the last accepted data is", async () => {
    const h = setup();
    h.ws.welcome();
    const room = h.client.channel("room:1");
    void room.enter({ name: "A" });
    h.ws.okAll();
    await flush();
    const errors: string[] = [];
    h.client.on("error", (e) => errors.push(e.code));
    const updating = room.update({ name: "A", blob: "x".repeat(10) });
    h.ws.reply(h.ws.frames("update")[0]!, { t: "error", code: "too_large", message: "data over 2048 bytes" });
    await expect(updating).rejects.toMatchObject({ code: "too_large" });
    expect(errors).toEqual(["too_large"]);
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome({ resumed: false });
    expect(h.ws.frames("enter")).toMatchObject([{ data: { name: "A" } }]);
    h.client.release();
  });
});
