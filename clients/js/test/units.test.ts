import { describe, expect, it, vi } from "vitest";
import { NOT_SUBSCRIBED, UNKNOWN, planChannel, sameJson, type ChannelIntent } from "../src/channel-plan.js";
import { jwtExpiryMs } from "../src/jwt.js";
import { RefSet } from "../src/refset.js";
import { systemClock } from "../src/runtime.js";

const intent = (over: Partial<ChannelIntent>): ChannelIntent => ({ ...NOT_SUBSCRIBED, subscribed: true, ...over });

describe("planChannel", () => {
  it("plans from nothing", () => {
    expect(planChannel("c", NOT_SUBSCRIBED, NOT_SUBSCRIBED)).toEqual([]);
    expect(planChannel("c", NOT_SUBSCRIBED, intent({}))).toEqual([{ t: "subscribe", channel: "c" }]);
    expect(planChannel("c", NOT_SUBSCRIBED, intent({ occupancy: true }))).toEqual([
      { t: "subscribe", channel: "c", occupancy: true },
    ]);
    expect(planChannel("c", NOT_SUBSCRIBED, intent({ entered: true, data: { a: 1 } }))).toEqual([
      { t: "enter", channel: "c", data: { a: 1 } },
    ]);
    expect(planChannel("c", NOT_SUBSCRIBED, intent({ entered: true, occupancy: true }))).toEqual([
      { t: "subscribe", channel: "c", occupancy: true },
      { t: "enter", channel: "c" },
    ]);
  });

  it("plans changes from a known state", () => {
    const entered = intent({ entered: true, data: { a: 1 } });
    expect(planChannel("c", entered, intent({ entered: true, data: { a: 1 } }))).toEqual([]);
    expect(planChannel("c", entered, intent({ entered: true, data: { a: 2 } }))).toEqual([
      { t: "update", channel: "c", data: { a: 2 } },
    ]);
    expect(planChannel("c", entered, intent({}))).toEqual([{ t: "leave", channel: "c" }]);
    expect(planChannel("c", entered, NOT_SUBSCRIBED)).toEqual([{ t: "unsubscribe", channel: "c" }]);
    expect(planChannel("c", intent({}), intent({ occupancy: true }))).toEqual([
      { t: "subscribe", channel: "c", occupancy: true },
    ]);
    expect(planChannel("c", intent({ occupancy: true }), intent({}))).toEqual([]);
  });

  it("plans idempotent frames from an unknown state", () => {
    expect(planChannel("c", UNKNOWN, NOT_SUBSCRIBED)).toEqual([{ t: "unsubscribe", channel: "c" }]);
    expect(planChannel("c", UNKNOWN, intent({}))).toEqual([
      { t: "subscribe", channel: "c" },
      { t: "leave", channel: "c" },
    ]);
    expect(planChannel("c", UNKNOWN, intent({ entered: true, data: { a: 1 } }))).toEqual([
      { t: "enter", channel: "c", data: { a: 1 } },
    ]);
  });
});

describe("sameJson", () => {
  it("compares JSON values structurally, ignoring key order", () => {
    expect(sameJson({ a: 1, b: [1, { c: null }] }, { b: [1, { c: null }], a: 1 })).toBe(true);
    expect(sameJson({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(sameJson([1, 2], [2, 1])).toBe(false);
    expect(sameJson({ a: undefined }, { b: undefined })).toBe(false);
    expect(sameJson(undefined, {})).toBe(false);
  });
});

describe("jwtExpiryMs", () => {
  const token = (payload: string) => `x.${Buffer.from(payload).toString("base64url")}.y`;

  it("reads exp in milliseconds", () => {
    expect(jwtExpiryMs(token('{"sub":"ä","exp":1700000000}'))).toBe(1_700_000_000_000);
  });

  it("returns null when there is no readable exp", () => {
    expect(jwtExpiryMs(token('{"sub":"a"}'))).toBeNull();
    expect(jwtExpiryMs(token('{"exp":"soon"}'))).toBeNull();
    expect(jwtExpiryMs("not a jwt")).toBeNull();
    expect(jwtExpiryMs("a.!!!.b")).toBeNull();
  });
});

describe("RefSet", () => {
  it("reports keys once their linger has run out, unless acquired again", () => {
    vi.useFakeTimers();
    const inactive: string[][] = [];
    const set = new RefSet<string>(systemClock, (keys) => inactive.push(keys));
    expect(set.acquire(["a", "b"])).toEqual(["a", "b"]);
    expect(set.acquire(["a"])).toEqual([]);
    set.release(["a", "b"], 100);
    set.release(["a"], 100);
    vi.advanceTimersByTime(50);
    set.acquire(["b"]);
    vi.advanceTimersByTime(50);
    expect(inactive).toEqual([["a"]]);
    expect(set.has("b")).toBe(true);
    // A newer linger is not cut short by an older timer.
    set.release(["b"], 100);
    vi.advanceTimersByTime(60);
    set.acquire(["b"]);
    set.release(["b"], 100);
    vi.advanceTimersByTime(60);
    expect(set.has("b")).toBe(true);
    vi.advanceTimersByTime(40);
    expect(inactive).toEqual([["a"], ["b"]]);
    vi.useRealTimers();
  });

  it("drops at once with no delay, even a lingering key", () => {
    vi.useFakeTimers();
    const inactive: string[][] = [];
    const set = new RefSet<string>(systemClock, (keys) => inactive.push(keys));
    set.acquire(["a"]);
    expect(set.release(["a"], 0)).toEqual(["a"]);
    set.acquire(["b"]);
    set.release(["b"], 100);
    expect(set.release(["b"], 0)).toEqual(["b"]);
    vi.advanceTimersByTime(100);
    expect(inactive).toEqual([]);
    vi.useRealTimers();
  });
});
