import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { flush, member, setup } from "./helpers.js";

describe("reference counting and the release delay", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("two handles subscribing to one channel share one server subscription", () => {
    const h = setup();
    h.ws.welcome();
    const a = h.client.channel("room:1");
    const b = h.client.channel("room:1");
    void a.subscribe();
    void b.subscribe();
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    a.release();
    vi.advanceTimersByTime(10_000);
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    b.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.summary()).toEqual(["subscribe:room:1", "unsubscribe:room:1"]);
    h.client.release();
  });

  it("subscribe, release, subscribe again within the delay: no unsubscribe is sent", () => {
    const h = setup();
    h.ws.welcome();
    const first = h.client.channel("room:1");
    void first.subscribe();
    first.release();
    vi.advanceTimersByTime(1_000);
    const second = h.client.channel("room:1");
    void second.subscribe();
    vi.advanceTimersByTime(60_000);
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    h.client.release();
  });

  it("release and wait past the delay: unsubscribe is sent once", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.subscribe();
    handle.release();
    vi.advanceTimersByTime(1_499);
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    vi.advanceTimersByTime(1);
    expect(h.ws.summary()).toEqual(["subscribe:room:1", "unsubscribe:room:1"]);
    h.client.release();
  });

  it("an entered handle released and re-entered within the delay sends no leave and no second enter", () => {
    const h = setup();
    h.ws.welcome();
    const first = h.client.channel("room:1");
    void first.enter({ name: "A" });
    first.release();
    const second = h.client.channel("room:1");
    void second.enter({ name: "A" });
    vi.advanceTimersByTime(10_000);
    expect(h.ws.summary()).toEqual(["enter:room:1"]);
    h.client.release();
  });

  it("re-entering within the delay with other data sends an update", () => {
    const h = setup();
    h.ws.welcome();
    const first = h.client.channel("room:1");
    void first.enter({ name: "A" });
    first.release();
    void h.client.channel("room:1").enter({ name: "B" });
    vi.advanceTimersByTime(10_000);
    expect(h.ws.frames()).toMatchObject([
      { t: "enter", data: { name: "A" } },
      { t: "update", data: { name: "B" } },
    ]);
    h.client.release();
  });

  it("releasing an entered handle sends a single unsubscribe after the delay", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.enter({ name: "A" });
    handle.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.summary()).toEqual(["enter:room:1", "unsubscribe:room:1"]);
    h.client.release();
  });

  it("leave() acts at once when no other handle has entered", () => {
    const h = setup();
    h.ws.welcome();
    const a = h.client.channel("room:1");
    const b = h.client.channel("room:1");
    void a.enter();
    void b.enter();
    void a.leave();
    expect(h.ws.summary()).toEqual(["enter:room:1"]);
    void b.leave();
    expect(h.ws.summary()).toEqual(["enter:room:1", "leave:room:1"]);
    h.client.release();
  });

  it("a subscriber and an entered handle: leaving keeps the subscription", () => {
    const h = setup();
    h.ws.welcome();
    const viewer = h.client.channel("room:1");
    const member = h.client.channel("room:1");
    void viewer.subscribe();
    void member.enter({ n: 1 });
    member.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.summary()).toEqual(["subscribe:room:1", "enter:room:1", "leave:room:1"]);
    h.client.release();
  });

  it("asks for occupancy when a later handle wants it", () => {
    const h = setup();
    h.ws.welcome();
    void h.client.channel("room:1").subscribe();
    void h.client.channel("room:1").subscribe({ occupancy: true });
    expect(h.ws.frames("subscribe")).toEqual([
      { t: "subscribe", channel: "room:1", id: expect.any(Number) },
      { t: "subscribe", channel: "room:1", occupancy: true, id: expect.any(Number) },
    ]);
    h.client.release();
  });

  it("watches are reference-counted and unwatched after the delay", () => {
    const h = setup();
    h.ws.welcome();
    void h.client.watch(["bob", "carol"]);
    void h.client.watch(["bob"]);
    expect(h.ws.frames("watch")).toMatchObject([{ users: ["bob", "carol"] }]);
    h.client.unwatch(["bob"]);
    h.client.unwatch(["bob", "carol"]);
    void h.client.watch(["carol"]);
    vi.advanceTimersByTime(1_500);
    expect(h.ws.frames("unwatch")).toMatchObject([{ users: ["bob"] }]);
    expect(h.ws.frames("watch")).toHaveLength(1);
    h.client.release();
  });

  it("unwatch of users this client never watched does nothing", () => {
    const h = setup();
    const other = h.another();
    h.ws.welcome();
    void other.watch(["bob"]);
    h.client.unwatch(["bob"]);
    vi.advanceTimersByTime(1_500);
    expect(h.ws.frames("unwatch")).toEqual([]);
    other.release();
    h.client.release();
  });

  it("releasing a client gives back exactly what it took", () => {
    const h = setup();
    const other = h.another();
    h.ws.welcome();
    void h.client.channel("room:1").enter();
    void h.client.channel("lobby").subscribe();
    void h.client.watch(["bob"]);
    void other.channel("lobby").subscribe();
    const listener = vi.fn();
    h.client.on("presence", listener);
    h.client.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.summary()).toEqual(["enter:room:1", "subscribe:lobby", "watch", "unsubscribe:room:1", "unwatch"]);
    h.ws.receive({ t: "presence", users: {} });
    expect(listener).not.toHaveBeenCalled();
    other.release();
  });

  it("a channel's members are forgotten once it is unsubscribed", async () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.subscribe();
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("a")], more: false });
    expect(handle.members()).toHaveLength(1);
    void handle.unsubscribe();
    expect(handle.members()).toEqual([]);
    await flush();
    h.client.release();
  });
});

describe("on() returns off()", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("for client events", () => {
    const h = setup();
    const states: string[] = [];
    const off = h.client.on("state", (s) => states.push(s));
    h.ws.welcome();
    off();
    off();
    h.ws.serverClose(1006);
    expect(states).toEqual(["connected"]);
    h.client.release();
  });

  it("for channel events, one registration at a time", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.subscribe();
    const joins: string[] = [];
    const listener = (m: { user: string }) => joins.push(m.user);
    const offA = handle.on("join", listener);
    const offB = handle.on("join", listener);
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [], more: false });
    h.ws.receive({ t: "join", channel: "room:1", seq: 1, member: member("a") });
    offA();
    h.ws.receive({ t: "join", channel: "room:1", seq: 2, member: member("b") });
    offB();
    h.ws.receive({ t: "join", channel: "room:1", seq: 3, member: member("c") });
    expect(joins).toEqual(["a", "a", "b"]);
    h.client.release();
  });

  it("a listener that throws does not stop the others", () => {
    const h = setup();
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.subscribe();
    const seen: string[] = [];
    const report = vi.spyOn(console, "error").mockImplementation(() => {});
    handle.on("members", () => {
      throw new Error("boom");
    });
    handle.on("members", (m) => seen.push(String(m.length)));
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("a")], more: false });
    expect(seen).toEqual(["1"]);
    expect(report).toHaveBeenCalledWith(new Error("boom"));
    report.mockRestore();
    h.client.release();
  });
});

describe("with releaseDelayMs: 0", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a release acts at once", () => {
    const h = setup({ releaseDelayMs: 0 });
    h.ws.welcome();
    const handle = h.client.channel("room:1");
    void handle.enter();
    handle.release();
    expect(h.ws.summary()).toEqual(["enter:room:1", "unsubscribe:room:1"]);
    h.client.release();
  });
});
