import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PresenceError } from "../src/index.js";
import { flush, setup } from "./helpers.js";

describe("requests and replies", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("gives every request its own integer id and matches replies by id, in any order", async () => {
    const h = setup();
    h.ws.welcome();
    const room = h.client.channel("room:1");
    const first = room.publish({ n: 1 });
    const second = room.publish({ n: 2 });
    const [a, b] = h.ws.frames("publish");
    expect(a).toMatchObject({ t: "publish", channel: "room:1", data: { n: 1 } });
    expect(Number.isInteger(a!.id)).toBe(true);
    expect(b!.id).not.toBe(a!.id);

    const settled: string[] = [];
    void first.then(() => settled.push("first"));
    void second.then(() => settled.push("second"));
    h.ws.reply(b!, { t: "ok" });
    await flush();
    expect(settled).toEqual(["second"]);
    h.ws.reply(a!, { t: "ok" });
    await flush();
    expect(settled).toEqual(["second", "first"]);
    h.client.release();
  });

  it("rejects with a typed PresenceError carrying the server's code and message", async () => {
    const h = setup();
    h.ws.welcome();
    const result = h.client.channel("room:1").publish("hi");
    const frame = h.ws.frames("publish")[0]!;
    h.ws.reply(frame, { t: "error", code: "forbidden", message: "publish is not allowed here" });
    const error = await result.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PresenceError);
    expect(error).toMatchObject({ code: "forbidden", message: "publish is not allowed here" });
    h.client.release();
  });

  it("rejects a state operation with the server's error and reports it", async () => {
    const h = setup();
    h.ws.welcome();
    const errors: PresenceError[] = [];
    h.client.on("error", (e) => errors.push(e));
    const entering = h.client.channel("private:x").enter({ name: "A" });
    h.ws.reply(h.ws.frames("enter")[0]!, { t: "error", code: "forbidden", message: "no" });
    await expect(entering).rejects.toMatchObject({ code: "forbidden" });
    expect(errors.map((e) => e.code)).toEqual(["forbidden"]);
    h.client.release();
  });

  it("reports errors that belong to no request", () => {
    const h = setup();
    h.ws.welcome();
    const errors: string[] = [];
    h.client.on("error", (e) => errors.push(e.code));
    h.ws.receive({ t: "error", code: "rate_limited", message: "slow down" });
    expect(errors).toEqual(["rate_limited"]);
    h.client.release();
  });

  it("queues requests made while disconnected and sends them once welcomed", async () => {
    const h = setup();
    const sent = h.client.channel("room:1").publish({ hello: true });
    expect(h.ws.frames()).toEqual([]);
    h.ws.welcome();
    const frame = h.ws.frames("publish")[0];
    expect(frame).toMatchObject({ channel: "room:1", data: { hello: true } });
    h.ws.reply(frame!, { t: "ok" });
    await expect(sent).resolves.toBeUndefined();
    h.client.release();
  });

  it("rejects queued requests with `unavailable` after the timeout", async () => {
    const h = setup({ requestTimeoutMs: 3_000 });
    const sent = h.client.channel("room:1").publish("late");
    vi.advanceTimersByTime(2_999);
    let outcome: unknown = "pending";
    sent.catch((e: unknown) => (outcome = e));
    await flush();
    expect(outcome).toBe("pending");
    vi.advanceTimersByTime(1);
    await flush();
    expect(outcome).toBeInstanceOf(PresenceError);
    expect((outcome as PresenceError).code).toBe("unavailable");
    h.ws.welcome();
    expect(h.ws.frames("publish")).toEqual([]);
    h.client.release();
  });

  it("rejects a request whose connection dropped before the reply with `unavailable`", async () => {
    const h = setup();
    h.ws.welcome();
    const sent = h.client.channel("room:1").publish("x");
    h.ws.serverClose(1006);
    await expect(sent).rejects.toMatchObject({ code: "unavailable" });
    h.client.release();
  });

  it("state operations wait for a connection and are applied when it comes", async () => {
    const h = setup();
    const subscribed = h.client.channel("room:1").subscribe();
    h.ws.welcome();
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    h.ws.okAll();
    await expect(subscribed).resolves.toBeUndefined();
    h.client.release();
  });

  it("a state operation that times out still applies on the next connection", async () => {
    const h = setup({ requestTimeoutMs: 1_000 });
    const entering = h.client.channel("room:1").enter({ name: "A" });
    vi.advanceTimersByTime(1_000);
    await expect(entering).rejects.toMatchObject({ code: "unavailable" });
    h.ws.welcome();
    expect(h.ws.frames("enter")).toMatchObject([{ channel: "room:1", data: { name: "A" } }]);
    h.client.release();
  });
});
