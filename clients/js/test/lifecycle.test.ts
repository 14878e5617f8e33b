import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ConnectionState } from "../src/index.js";
import { FakeEventSource, flush, setup } from "./helpers.js";

/** An unsigned JWT whose payload is `claims`. */
function jwt(claims: object): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}.signature`;
}

describe("connection life", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("reports connecting, connected, reconnecting", () => {
    const h = setup();
    const states: ConnectionState[] = [];
    h.client.on("state", (s) => states.push(s));
    expect(h.client.state).toBe("connecting");
    h.ws.welcome();
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(500);
    h.ws.welcome();
    expect(states).toEqual(["connected", "reconnecting", "connected"]);
    expect(h.client.user).toBe("alice");
    h.client.release();
  });

  it("logout sends bye, closes, forgets the session and does not reconnect", () => {
    const h = setup();
    h.ws.welcome();
    const ws = h.ws;
    h.client.logout();
    expect(ws.frames().map((f) => f.t)).toEqual(["bye"]);
    expect(ws.closedByClient).not.toBeNull();
    expect(h.client.state).toBe("disconnected");
    vi.advanceTimersByTime(120_000);
    expect(h.sockets).toHaveLength(1);
  });

  it("logout closes the connection for every client of the URL", async () => {
    const h = setup();
    const other = h.another();
    h.ws.welcome();
    other.logout();
    expect(h.client.state).toBe("disconnected");
    await expect(h.client.channel("x").subscribe()).rejects.toMatchObject({ code: "unavailable" });
    h.client.release();
  });

  it("release closes the socket without bye, after the release delay", () => {
    const h = setup();
    h.ws.welcome();
    h.client.release();
    expect(h.ws.closedByClient).toBeNull();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.frames().map((f) => f.t)).not.toContain("bye");
    expect(h.ws.closedByClient).not.toBeNull();
    expect(h.client.state).toBe("disconnected");
  });

  it("clients of one URL share one socket, which closes when the last is released", () => {
    const h = setup();
    const second = h.another();
    h.ws.welcome();
    expect(h.sockets).toHaveLength(1);
    expect(second.state).toBe("connected");
    h.client.release();
    vi.advanceTimersByTime(10_000);
    expect(h.ws.closedByClient).toBeNull();
    second.release();
    vi.advanceTimersByTime(1_500);
    expect(h.ws.closedByClient).not.toBeNull();
    expect(h.ws.frames().map((f) => f.t)).not.toContain("bye");
  });

  it("a client created within the release delay keeps the socket", () => {
    const h = setup();
    h.ws.welcome();
    h.client.release();
    vi.advanceTimersByTime(1_000);
    const again = h.another();
    vi.advanceTimersByTime(10_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.ws.closedByClient).toBeNull();
    expect(again.state).toBe("connected");
    again.release();
  });

  it("on 4409 (kicked) emits `kicked` and stops reconnecting", () => {
    const h = setup();
    h.ws.welcome();
    const kicked = vi.fn();
    h.client.on("kicked", kicked);
    h.ws.serverClose(4409, "disconnected by admin");
    expect(kicked).toHaveBeenCalledWith({ code: 4409, reason: "disconnected by admin" });
    expect(h.client.state).toBe("disconnected");
    vi.advanceTimersByTime(600_000);
    expect(h.sockets).toHaveLength(1);
    h.client.release();
  });

  it("reconnects at once on the browser `online` event", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win, random: () => 0.99 });
    h.ws.welcome();
    for (let i = 0; i < 6; i++) h.ws.serverClose(1006), vi.advanceTimersByTime(30_000);
    h.ws.serverClose(1006);
    expect(h.client.state).toBe("reconnecting");
    const before = h.sockets.length;
    win.dispatch("online");
    expect(h.sockets).toHaveLength(before + 1);
    h.client.release();
    vi.advanceTimersByTime(1_500);
    expect(win.count("online")).toBe(0);
  });

  it("`online` while connected changes nothing", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win });
    h.ws.welcome();
    win.dispatch("online");
    expect(h.sockets).toHaveLength(1);
    h.client.release();
  });

  it("pings every heartbeat_ms", () => {
    const h = setup();
    h.ws.welcome({ heartbeat_ms: 1_000 });
    vi.advanceTimersByTime(999);
    expect(h.ws.frames("ping")).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(h.ws.frames("ping")).toEqual([{ t: "ping" }]);
    h.ws.receive({ t: "pong" });
    vi.advanceTimersByTime(1_000);
    expect(h.ws.frames("ping")).toHaveLength(2);
    h.client.release();
  });

  it("gives up on a silent socket after 2 × heartbeat_ms and reconnects", () => {
    const h = setup();
    h.ws.welcome({ heartbeat_ms: 1_000 });
    const first = h.ws;
    vi.advanceTimersByTime(1_500);
    first.receive({ t: "pong" });
    // Frames keep it alive: 2 s after the last one, not after the welcome.
    vi.advanceTimersByTime(1_999);
    expect(first.closedByClient).toBeNull();
    expect(h.client.state).toBe("connected");
    vi.advanceTimersByTime(1);
    expect(first.closedByClient).not.toBeNull();
    expect(h.client.state).toBe("reconnecting");
    vi.advanceTimersByTime(500);
    expect(h.sockets).toHaveLength(2);
    h.client.release();
  });

  it("on 4401 asks the token provider for a fresh token and reconnects with it", async () => {
    let n = 0;
    const provider = vi.fn(async () => `token-${++n}`);
    const h = setup({ token: provider });
    await flush();
    h.ws.welcome({ session: "s-1" });
    h.ws.serverClose(4401, "token expired");
    await flush();
    expect(provider).toHaveBeenCalledTimes(2);
    expect(h.sockets).toHaveLength(2);
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ token: "token-2", resume: "s-1" });
    h.client.release();
  });

  it("after 4401 waits for the provider to give a different token", async () => {
    let token = "old";
    const provider = vi.fn(async () => token);
    const h = setup({ token: provider });
    await flush();
    h.ws.welcome();
    h.ws.serverClose(4401);
    await flush();
    expect(h.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.sockets).toHaveLength(1);
    token = "new";
    await vi.advanceTimersByTimeAsync(2_000);
    expect(h.sockets).toHaveLength(2);
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ token: "new" });
    h.client.release();
  });

  it("after 4401 with a static token retries with backoff", () => {
    const h = setup({ token: "static" });
    h.ws.welcome();
    h.ws.serverClose(4401);
    expect(h.sockets).toHaveLength(1);
    vi.advanceTimersByTime(250);
    expect(h.sockets).toHaveLength(2);
    h.ws.serverClose(4401);
    vi.advanceTimersByTime(499);
    expect(h.sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(h.sockets).toHaveLength(3);
    h.client.release();
  });

  it("reports a refused hello and keeps retrying", () => {
    const h = setup();
    const errors: string[] = [];
    h.client.on("error", (e) => errors.push(e.code));
    h.ws.open();
    h.ws.receive({ t: "error", code: "unauthorized", message: "bad token" });
    h.ws.serverClose(4401);
    expect(errors).toEqual(["unauthorized"]);
    expect(h.client.state).toBe("reconnecting");
    h.client.release();
  });

  it("refreshes a provider token shortly before its exp", async () => {
    const now = Date.now();
    const exp = Math.floor(now / 1000) + 120;
    const tokens = [jwt({ sub: "alice", exp }), jwt({ sub: "alice", exp: exp + 3600 })];
    let calls = 0;
    const provider = vi.fn(async () => tokens[Math.min(calls++, 1)]!);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await flush();
    h.ws.welcome();
    await vi.advanceTimersByTimeAsync(exp * 1000 - now - 30_000 - 10);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(10);
    expect(h.ws.frames("refresh")).toMatchObject([{ t: "refresh", token: tokens[1] }]);
    h.ws.okAll();
    await flush();
    // The next refresh is planned from the new token's exp.
    await vi.advanceTimersByTimeAsync(3_000_000);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    h.client.release();
  });

  it("does not plan refreshes for a static token", async () => {
    const exp = Math.floor(Date.now() / 1000) + 60;
    const h = setup({ token: jwt({ sub: "alice", exp }) });
    h.ws.welcome();
    await vi.advanceTimersByTimeAsync(59_000);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    h.client.release();
  });

  it("connects as a guest with a null token and sends no status", () => {
    const doc = new FakeEventSource();
    const h = setup({ token: null, document: doc, awayAfterHiddenMs: 100 });
    h.ws.open();
    expect(h.ws.hello()).toMatchObject({ token: null });
    h.ws.welcome({ user: null });
    doc.visibilityState = "hidden";
    doc.dispatch("visibilitychange");
    vi.advanceTimersByTime(1_000);
    expect(h.ws.frames("status")).toEqual([]);
    expect(h.client.user).toBeNull();
    h.client.release();
  });

  it("goes away after the page is hidden for awayAfterHiddenMs and back online when visible", () => {
    const doc = new FakeEventSource();
    const h = setup({ document: doc, awayAfterHiddenMs: 60_000 });
    h.ws.welcome();
    doc.visibilityState = "hidden";
    doc.dispatch("visibilitychange");
    vi.advanceTimersByTime(59_999);
    expect(h.ws.frames("status")).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.ws.frames("status")).toMatchObject([{ status: "away" }]);
    expect(h.client.ownStatus).toBe("away");
    doc.visibilityState = "visible";
    doc.dispatch("visibilitychange");
    expect(h.ws.frames("status")).toMatchObject([{ status: "away" }, { status: "online" }]);
    h.client.release();
  });

  it("a short hide sends nothing", () => {
    const doc = new FakeEventSource();
    const h = setup({ document: doc });
    h.ws.welcome();
    doc.visibilityState = "hidden";
    doc.dispatch("visibilitychange");
    vi.advanceTimersByTime(10_000);
    doc.visibilityState = "visible";
    doc.dispatch("visibilitychange");
    vi.advanceTimersByTime(120_000);
    expect(h.ws.frames("status")).toEqual([]);
    h.client.release();
  });

  it("setStatus('away') stays away when the page becomes visible", () => {
    const doc = new FakeEventSource();
    const h = setup({ document: doc, awayAfterHiddenMs: 1_000 });
    h.ws.welcome();
    void h.client.setStatus("away");
    doc.visibilityState = "hidden";
    doc.dispatch("visibilitychange");
    vi.advanceTimersByTime(1_000);
    doc.visibilityState = "visible";
    doc.dispatch("visibilitychange");
    expect(h.ws.frames("status")).toMatchObject([{ status: "away" }]);
    void h.client.setStatus("online");
    expect(h.ws.frames("status")).toMatchObject([{ status: "away" }, { status: "online" }]);
    h.client.release();
  });
});

describe("guests", () => {
  it("setStatus is refused locally for a guest", async () => {
    const h = setup({ token: null });
    h.ws.welcome({ user: null });
    await expect(h.client.setStatus("away")).rejects.toMatchObject({ code: "forbidden" });
    expect(h.ws.frames("status")).toEqual([]);
    h.client.release();
  });
});
