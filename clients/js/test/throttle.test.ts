import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { flush, setup, type Harness } from "./helpers.js";

/** Enters room:1 on a welcomed connection, with the enter confirmed. */
async function entered(h: Harness): Promise<ReturnType<Harness["client"]["channel"]>> {
  h.ws.welcome();
  const room = h.client.channel("room:1");
  const done = room.enter({ x: 0 });
  h.ws.okAll();
  await done;
  return room;
}

/** Answers every request as the server would, as they come. */
function autoOk(h: Harness): void {
  const send = h.ws.send.bind(h.ws);
  h.ws.send = (data: string) => {
    send(data);
    queueMicrotask(() => h.ws.okAll());
  };
}

describe("update throttle", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  it("a cursor at 60 Hz sends one update per 100 ms, the latest data last, and stays under the rate limit", async () => {
    const h = setup();
    const room = await entered(h);
    autoOk(h);
    // 2 s at 60 Hz: 120 updates.
    for (let i = 1; i <= 120; i++) {
      void room.update({ x: i });
      await vi.advanceTimersByTimeAsync(1000 / 60);
    }
    await vi.advanceTimersByTimeAsync(200);
    const updates = h.ws.frames("update");
    expect(updates.length).toBeGreaterThanOrEqual(19);
    expect(updates.length).toBeLessThanOrEqual(21);
    // The first went out at once, the last carries the last value.
    expect(updates[0]).toMatchObject({ data: { x: 1 } });
    expect(updates[updates.length - 1]).toMatchObject({ data: { x: 120 } });
    // The server allows 50 requests a second per connection (burst 100).
    expect(updates.length / 2).toBeLessThan(50);
  });

  it("an update in a quiet channel goes out at once; one within the interval waits for its end", async () => {
    const h = setup();
    const room = await entered(h);
    const first = room.update({ x: 1 });
    expect(h.ws.frames("update")).toMatchObject([{ data: { x: 1 } }]);
    h.ws.okAll();
    await first;
    let settled = false;
    const held = room.update({ x: 2 }).then(() => (settled = true));
    void room.update({ x: 3 });
    await flush();
    expect(h.ws.frames("update")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(h.ws.frames("update")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.ws.frames("update")).toMatchObject([{ data: { x: 1 } }, { data: { x: 3 } }]);
    expect(settled).toBe(false);
    h.ws.okAll();
    await held;
    expect(settled).toBe(true);
    // Quiet again after the interval: at once.
    await vi.advanceTimersByTimeAsync(100);
    void room.update({ x: 4 });
    expect(h.ws.frames("update")).toHaveLength(3);
  });

  it("updateThrottleMs: 0 sends every update", async () => {
    const h = setup({ updateThrottleMs: 0 });
    const room = await entered(h);
    autoOk(h);
    for (let i = 1; i <= 10; i++) {
      void room.update({ x: i });
      await vi.advanceTimersByTimeAsync(1000 / 60);
    }
    expect(h.ws.frames("update")).toHaveLength(10);
  });

  it("enter with new data on an entered channel is throttled as update is", async () => {
    const h = setup();
    const room = await entered(h);
    autoOk(h);
    for (let i = 1; i <= 6; i++) void room.enter({ x: i });
    await flush();
    await vi.advanceTimersByTimeAsync(100);
    const sent = [...h.ws.frames("update"), ...h.ws.frames("enter").slice(1)];
    expect(sent.length).toBe(2);
    expect(sent[sent.length - 1]).toMatchObject({ data: { x: 6 } });
  });
});
