import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ConnectionState } from "../src/index.js";
import { FakeEventSource, flush, setup } from "./helpers.js";

/** An unsigned JWT whose payload is `claims`. */
function jwt(claims: object): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}.signature`;
}

describe("the browser's offline and online events", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("offline while connected reports reconnecting and keeps the socket; online checks it with a ping", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win });
    const states: ConnectionState[] = [];
    h.client.on("state", (state) => states.push(state));
    h.ws.welcome();
    win.dispatch("offline");
    expect(h.client.state).toBe("reconnecting");
    expect(h.ws.closedByClient).toBeNull();
    win.dispatch("online");
    expect(h.ws.frames("ping")).toHaveLength(1);
    expect(h.client.state).toBe("reconnecting");
    vi.advanceTimersByTime(1_000);
    h.ws.receive({ t: "pong" });
    expect(h.client.state).toBe("connected");
    vi.advanceTimersByTime(10_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.ws.closedByClient).toBeNull();
    expect(states).toEqual(["connected", "reconnecting", "connected"]);
    h.client.release();
  });

  it("a socket that does not answer the check is dropped for a new one at once", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win, random: () => 0.99 });
    h.ws.welcome();
    win.dispatch("offline");
    win.dispatch("online");
    vi.advanceTimersByTime(2_999);
    expect(h.sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(h.sockets[0]!.closedByClient).not.toBeNull();
    expect(h.sockets).toHaveLength(2);
    expect(h.client.state).toBe("reconnecting");
    h.client.release();
  });

  it("only the pong of the check's own ping answers it, not a frame or pong already on its way", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win, random: () => 0.99 });
    h.ws.welcome({ heartbeat_ms: 20_000 });
    // A heartbeat ping goes out and its pong is still on its way.
    const before = h.ws.frames("ping").length;
    vi.advanceTimersByTime(20_000);
    expect(h.ws.frames("ping").length).toBe(before + 1);
    win.dispatch("offline");
    win.dispatch("online");
    expect(h.ws.frames("ping").length).toBe(before + 2);
    // What was in flight arrives: it does not count as the check's answer.
    h.ws.receive({ t: "presence", users: { bob: { status: "online" } } });
    h.ws.receive({ t: "pong" });
    expect(h.client.state).toBe("reconnecting");
    vi.advanceTimersByTime(3_000);
    expect(h.sockets[0]!.closedByClient).not.toBeNull();
    expect(h.sockets).toHaveLength(2);
    h.client.release();
  });

  it("online without offline checks the socket too, and stays connected while it does", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win });
    h.ws.welcome();
    win.dispatch("online");
    expect(h.ws.frames("ping")).toHaveLength(1);
    expect(h.client.state).toBe("connected");
    h.ws.receive({ t: "pong" });
    vi.advanceTimersByTime(10_000);
    expect(h.sockets).toHaveLength(1);
    h.client.release();
  });

  it("while offline nothing is tried and the token provider is not called; online tries at once", async () => {
    const win = new FakeEventSource();
    const provider = vi.fn(async () => "token");
    const h = setup({ window: win, token: provider });
    await flush();
    h.ws.welcome();
    win.dispatch("offline");
    h.ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(300_000);
    win.dispatch("focus");
    await flush();
    expect(h.sockets).toHaveLength(1);
    expect(provider).toHaveBeenCalledTimes(1);
    expect(h.client.state).toBe("reconnecting");
    win.dispatch("online");
    await flush();
    expect(provider).toHaveBeenCalledTimes(2);
    expect(h.sockets).toHaveLength(2);
    h.client.release();
  });

  it("a pending retry waits for online once the browser goes offline", () => {
    const win = new FakeEventSource();
    const h = setup({ window: win, random: () => 0.5 });
    h.ws.welcome();
    h.ws.serverClose(1006);
    win.dispatch("offline");
    vi.advanceTimersByTime(60_000);
    expect(h.sockets).toHaveLength(1);
    win.dispatch("online");
    expect(h.sockets).toHaveLength(2);
    h.client.release();
  });

  it("a page that starts offline (navigator.onLine false) connects once online", async () => {
    const win = Object.assign(new FakeEventSource(), { navigator: { onLine: false } });
    const provider = vi.fn(async () => "token");
    const h = setup({ window: win, token: provider });
    await flush();
    expect(h.sockets).toHaveLength(0);
    expect(provider).not.toHaveBeenCalled();
    expect(h.client.state).toBe("connecting");
    win.dispatch("online");
    await flush();
    expect(h.sockets).toHaveLength(1);
    h.client.release();
  });

  it("a token refresh due while offline waits for online without calling the provider", async () => {
    const win = new FakeEventSource();
    const start = Math.floor(Date.now() / 1000);
    let n = 0;
    const provider = vi.fn(async () => jwt({ sub: "alice", iat: start, exp: start + 120, n: ++n }));
    const h = setup({ window: win, token: provider, refreshBeforeExpiryMs: 30_000 });
    await flush();
    h.ws.welcome();
    win.dispatch("offline");
    await vi.advanceTimersByTimeAsync(100_000);
    expect(provider).toHaveBeenCalledTimes(1);
    win.dispatch("online");
    h.ws.receive({ t: "pong" });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(provider).toHaveBeenCalledTimes(2);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    h.client.release();
  });
});
