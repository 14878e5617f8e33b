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
