import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay } from "../src/index.js";
import { FakeEventSource, setup } from "./helpers.js";

describe("backoffDelay", () => {
  it("grows exponentially and stops at the cap", () => {
    const max = () => 0.999999;
    const bounds = Array.from({ length: 10 }, (_, attempt) => backoffDelay(attempt, {}, max));
    expect(bounds).toEqual([499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999]);
  });

  it("draws from the whole range [0, bound) (full jitter)", () => {
    expect(backoffDelay(3, {}, () => 0)).toBe(0);
    expect(backoffDelay(3, {}, () => 0.5)).toBe(2000);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(4, {}, Math.random);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(8000);
    }
  });

  it("honours custom base and cap, and stays finite for huge attempts", () => {
    expect(backoffDelay(0, { baseMs: 100, capMs: 1000 }, () => 0.999)).toBe(99);
    expect(backoffDelay(5, { baseMs: 100, capMs: 1000 }, () => 0.999)).toBe(999);
    expect(backoffDelay(10_000, {}, () => 0.5)).toBe(15_000);
  });
});

describe("reconnecting", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("retries with full-jitter delays bounded by the cap and never gives up", () => {
    const h = setup({ random: () => 0.999, backoff: { baseMs: 500, capMs: 30_000 } });
    for (let attempt = 0; attempt < 100; attempt++) {
      const before = h.sockets.length;
      h.ws.serverClose(1006);
      expect(h.client.state).toBe("reconnecting");
      // The next socket is opened exactly when the jittered delay has elapsed.
      const delay = Math.floor(0.999 * Math.min(30_000, 500 * 2 ** attempt));
      expect(delay).toBeLessThan(30_000);
      vi.advanceTimersByTime(delay - 1);
      expect(h.sockets.length).toBe(before);
      vi.advanceTimersByTime(1);
      expect(h.sockets.length).toBe(before + 1);
    }
    expect(h.sockets).toHaveLength(101);
    expect(h.client.state).toBe("reconnecting");
    h.client.release();
  });

  it("uses the random source for each delay", () => {
    const values = [0.1, 0.9, 0.0];
    const h = setup({ random: () => values.shift() ?? 0.5 });
    h.ws.serverClose(1006); // attempt 0: 0.1 * 500 = 50
    vi.advanceTimersByTime(49);
    expect(h.sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(h.sockets).toHaveLength(2);
    h.ws.serverClose(1006); // attempt 1: 0.9 * 1000 = 900
    vi.advanceTimersByTime(899);
    expect(h.sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(h.sockets).toHaveLength(3);
    h.ws.serverClose(1006); // attempt 2: 0
    vi.advanceTimersByTime(0);
    expect(h.sockets).toHaveLength(4);
    h.client.release();
  });

  it("starts over from the base delay after a welcome", () => {
    const h = setup({ random: () => 0.5, connectTimeoutMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      h.ws.serverClose(1006);
      vi.advanceTimersByTime(30_000);
    }
    h.ws.welcome();
    expect(h.client.state).toBe("connected");
    const before = h.sockets.length;
    h.ws.serverClose(1001);
    vi.advanceTimersByTime(249);
    expect(h.sockets.length).toBe(before);
    vi.advanceTimersByTime(1);
    expect(h.sockets.length).toBe(before + 1);
    h.client.release();
  });

  it("gives up on a socket that is not welcomed in time and retries", () => {
    const h = setup({ connectTimeoutMs: 5_000 });
    h.ws.open();
    vi.advanceTimersByTime(5_000);
    expect(h.sockets[0]!.closedByClient).not.toBeNull();
    expect(h.client.state).toBe("reconnecting");
    vi.advanceTimersByTime(500);
    expect(h.sockets).toHaveLength(2);
    h.client.release();
  });

  it("while the lost session may be resumed, no delay exceeds a third of grace_ms", () => {
    const h = setup({ random: () => 0.999 });
    h.ws.welcome({ grace_ms: 6_000 });
    h.ws.serverClose(1006);
    const lost = Date.now();
    const opened: number[] = [];
    // Every try fails before its welcome, for 40 s.
    while (Date.now() - lost < 40_000) {
      const before = h.sockets.length;
      vi.advanceTimersByTime(100);
      if (h.sockets.length > before) {
        opened.push(Date.now() - lost);
        h.ws.serverClose(1006);
      }
    }
    const gaps = opened.map((at, i) => at - (i === 0 ? 0 : opened[i - 1]!));
    const inGrace = gaps.filter((_, i) => opened[i]! <= 6_000);
    expect(inGrace.length).toBeGreaterThanOrEqual(4);
    for (const gap of inGrace) expect(gap).toBeLessThanOrEqual(2_000);
    // Once the session is gone the backoff grows again.
    expect(Math.max(...gaps)).toBeGreaterThan(2_000);
    h.client.release();
  });

  it("without a session to resume, the usual backoff applies", () => {
    const h = setup({ random: () => 0.999 });
    h.ws.welcome({ grace_ms: 6_000 });
    h.ws.serverClose(1000, "replaced"); // the session is someone else's now
    vi.advanceTimersByTime(499);
    expect(h.sockets).toHaveLength(2);
    for (let attempt = 1; attempt <= 3; attempt++) h.ws.serverClose(1006), vi.advanceTimersByTime(500 * 2 ** attempt);
    h.ws.serverClose(1006);
    // attempt 4: 0.999 × 8 s, more than a third of grace_ms
    vi.advanceTimersByTime(7_990);
    expect(h.sockets).toHaveLength(5);
    vi.advanceTimersByTime(2);
    expect(h.sockets).toHaveLength(6);
    h.client.release();
  });

  it("a pending retry is tried at once on focus and when the page becomes visible", () => {
    const win = new FakeEventSource();
    const doc = new FakeEventSource();
    const h = setup({ window: win, document: doc, random: () => 0.99, awayAfterHiddenMs: null });
    h.ws.welcome();
    h.ws.serverClose(1006);
    expect(h.sockets).toHaveLength(1);
    win.dispatch("focus");
    expect(h.sockets).toHaveLength(2);
    h.ws.serverClose(1006);
    doc.visibilityState = "hidden";
    doc.dispatch("visibilitychange");
    expect(h.sockets).toHaveLength(2);
    doc.visibilityState = "visible";
    doc.dispatch("visibilitychange");
    expect(h.sockets).toHaveLength(3);
    // While a socket is on its way, nothing more.
    win.dispatch("focus");
    expect(h.sockets).toHaveLength(3);
    h.client.release();
    vi.advanceTimersByTime(1_500);
    expect(win.count("focus") + doc.count("visibilitychange")).toBe(0);
  });
});
