import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setup } from "./helpers.js";

/** An unsigned JWT whose payload is `claims`. */
function jwt(claims: object): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}.signature`;
}

/** The server's clock, in seconds (tests move the client's clock away from it). */
let serverNow = 0;

let issued = 0;

/** A provider of tokens (each a new one) issued by the server now, living `lifetimeS`. */
function issuer(lifetimeS: number) {
  return vi.fn(async () => jwt({ sub: "alice", iat: serverNow, exp: serverNow + lifetimeS, jti: ++issued }));
}

/** Advances the clocks by `ms` in `stepMs` steps, the server answering every request at each step. */
async function run(h: ReturnType<typeof setup>, ms: number, stepMs = 100): Promise<void> {
  for (let t = 0; t < ms; t += stepMs) {
    await vi.advanceTimersByTimeAsync(stepMs);
    serverNow += stepMs / 1000;
    h.ws.okAll();
  }
}

describe("token refresh schedule", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    serverNow = 1_700_000_000;
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a token living less than refreshBeforeExpiryMs is refreshed halfway through its life, not in a loop", async () => {
    vi.setSystemTime(serverNow * 1000);
    const provider = issuer(20);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 9_900);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await run(h, 200);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    await run(h, 50_000);
    // One every 10 s, never a storm: at 10, 20, 30, 40, 50 and 60 s.
    expect(h.ws.frames("refresh")).toHaveLength(6);
    h.client.release();
  });

  it("a client clock an hour fast plans from the token's own lifetime (exp − iat)", async () => {
    vi.setSystemTime((serverNow + 3600) * 1000);
    const provider = issuer(600);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 569_000, 1_000);
    await run(h, 900);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await run(h, 200);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    await run(h, 570_000, 1_000);
    expect(h.ws.frames("refresh")).toHaveLength(2);
    expect(provider.mock.calls.length).toBeLessThanOrEqual(3);
    h.client.release();
  });

  it("a client clock an hour slow does not let the token expire", async () => {
    vi.setSystemTime((serverNow - 3600) * 1000);
    const provider = issuer(600);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 570_000, 1_000);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    h.client.release();
  });

  it("waits at least 5 s between refreshes, however short the token's life", async () => {
    vi.setSystemTime(serverNow * 1000);
    const provider = issuer(2);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 4_900);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await run(h, 200);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    h.client.release();
  });
});

describe("a refresh that does not go through", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    serverNow = 1_700_000_000;
    vi.setSystemTime(serverNow * 1000);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A provider that answers with `answers` in turn, then with fresh tokens; a `null` answer throws. */
  function scripted(lifetimeS: number, answers: ("same" | null)[]) {
    let last = "";
    let call = 0;
    return vi.fn(async () => {
      const answer = call++ === 0 || answers.length === 0 ? "fresh" : answers.shift();
      if (answer === null) throw new Error("token endpoint unreachable");
      if (answer === "fresh") last = jwt({ sub: "alice", iat: serverNow, exp: serverNow + lifetimeS, jti: ++issued });
      return last;
    });
  }

  it("when the provider gives the same token, asks again and sends the new one before exp", async () => {
    const provider = scripted(120, ["same", "same"]);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 90_100);
    expect(provider).toHaveBeenCalledTimes(2);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    // 1 s, then 2 s later.
    await run(h, 1_000);
    expect(provider).toHaveBeenCalledTimes(3);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await run(h, 2_000);
    expect(provider).toHaveBeenCalledTimes(4);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    expect(h.ws.closedByClient).toBeNull();
    h.client.release();
  });

  it("when the provider fails once, reports it and tries again", async () => {
    const provider = scripted(120, [null]);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    const errors: string[] = [];
    h.client.on("error", (error) => errors.push(error.message));
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 90_100);
    expect(errors).toEqual(["token endpoint unreachable"]);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    await run(h, 1_000);
    expect(h.ws.frames("refresh")).toHaveLength(1);
    h.client.release();
  });

  it("when the server refuses the new token, tries again with another", async () => {
    const provider = scripted(120, []);
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    h.client.on("error", () => {});
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await vi.advanceTimersByTimeAsync(90_000);
    const [first] = h.ws.frames("refresh");
    h.ws.reply(first!, { t: "error", code: "unauthorized", message: "bad token" });
    await run(h, 1_100);
    expect(h.ws.frames("refresh")).toHaveLength(2);
    h.client.release();
  });

  it("gives up at exp, closing in on it, and leaves it to the reconnect", async () => {
    const provider = scripted(120, Array<"same">(100).fill("same"));
    const h = setup({ token: provider, refreshBeforeExpiryMs: 30_000 });
    await vi.advanceTimersByTimeAsync(0);
    h.ws.welcome();
    await run(h, 119_000);
    const calls = provider.mock.calls.length;
    // At 90 s, then 1, 2, 4, 8 s later, then half of the time left: a handful, not a loop.
    expect(calls).toBeGreaterThanOrEqual(7);
    expect(calls).toBeLessThanOrEqual(10);
    await run(h, 60_000, 1_000);
    expect(provider.mock.calls.length).toBeLessThanOrEqual(calls + 1);
    expect(h.ws.frames("refresh")).toHaveLength(0);
    h.client.release();
  });
});
