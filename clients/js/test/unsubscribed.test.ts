import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PresenceError, UnsubscribedEvent } from "../src/index.js";
import { flush, member, setup, type Harness } from "./helpers.js";
import { FakeBrowser, settle } from "./tabs.js";

/** A client in `room:1` (entered, with a snapshot) and subscribed to `lobby`. */
async function inTwoChannels(): Promise<Harness> {
  const h = setup();
  h.ws.welcome({ session: "s-1" });
  void h.client.channel("room:1").enter({ name: "Alice" });
  void h.client.channel("lobby").subscribe();
  h.ws.receive({ t: "sync", channel: "room:1", seq: 3, members: [member("alice"), member("bob")], more: false });
  h.ws.okAll();
  await flush();
  h.ws.sent.length = 0;
  return h;
}

const revoke = (h: Harness, channel = "room:1"): void =>
  h.ws.receive({ t: "unsubscribed", channel, reason: "forbidden" });

/** Drops the socket and welcomes the next one. */
function reconnect(h: Harness, resumed: boolean): void {
  h.ws.serverClose(1006);
  vi.advanceTimersByTime(1_000);
  h.ws.welcome({ resumed, session: "s-2" });
}

describe("a channel the server takes away (unsubscribed)", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("clears the members, tells the channel's and the client's listeners, and ends the handles' references", async () => {
    const h = await inTwoChannels();
    const handle = h.client.channel("room:1");
    void handle.enter({ name: "Alice" });
    await flush();
    h.ws.okAll();
    const lists: string[][] = [];
    const onChannel: UnsubscribedEvent[] = [];
    const onClient: UnsubscribedEvent[] = [];
    const errors: PresenceError[] = [];
    handle.on("members", (members) => lists.push(members.map((m) => m.user)));
    handle.on("unsubscribed", (event) => onChannel.push(event));
    h.client.on("unsubscribed", (event) => onClient.push(event));
    h.client.on("error", (error) => errors.push(error));
    expect(handle.members()).toHaveLength(2);
    expect([handle.subscribed, handle.entered, handle.revoked]).toEqual([true, true, null]);

    revoke(h);
    expect(handle.members()).toEqual([]);
    expect(lists).toEqual([[]]);
    expect(onChannel).toEqual([{ channel: "room:1", reason: "forbidden" }]);
    expect(onClient).toEqual([{ channel: "room:1", reason: "forbidden" }]);
    expect([handle.subscribed, handle.entered, handle.revoked]).toEqual([false, false, "forbidden"]);
    expect(errors).toEqual([]);
    // Nothing is asked for again, and later frames of the channel are not applied.
    h.ws.receive({ t: "join", channel: "room:1", seq: 4, member: member("carol") });
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("carol")], more: false });
    await flush();
    expect(handle.members()).toEqual([]);
    expect(h.ws.summary()).toEqual([]);
    // Releasing a handle whose channel was taken away sends nothing either.
    handle.release();
    vi.advanceTimersByTime(10_000);
    expect(h.ws.summary()).toEqual([]);
    h.client.release();
  });

  it("is not subscribed or entered again after a reconnect, resumed or not", async () => {
    const h = await inTwoChannels();
    revoke(h);
    reconnect(h, false);
    expect(h.ws.summary()).toEqual(["subscribe:lobby"]);
    h.ws.okAll();
    await flush();
    reconnect(h, true);
    expect(h.ws.summary()).toEqual([]);
    h.client.release();
  });

  it("after a resume that took it away, a reconnect does not ask for it again", async () => {
    const h = await inTwoChannels();
    h.ws.serverClose(1006);
    vi.advanceTimersByTime(1_000);
    // Meanwhile the application changed its data there: re-sent on the resume, refused by the server.
    const updated = h.client.channel("room:1").update({ name: "Al" });
    h.ws.welcome({ resumed: true, session: "s-2" });
    revoke(h);
    const [update] = h.ws.frames("update");
    expect(update).toMatchObject({ channel: "room:1", data: { name: "Al" } });
    h.ws.reply(update!, { t: "error", code: "not_member", message: "not entered in room:1" });
    await expect(updated).rejects.toMatchObject({ code: "not_member" });
    expect(h.client.channel("room:1").members()).toEqual([]);
    h.ws.sent.length = 0;
    reconnect(h, false);
    expect(h.ws.summary()).toEqual(["subscribe:lobby"]);
    h.client.release();
  });

  it("update rejects with forbidden, also one held back by the throttle", async () => {
    const h = await inTwoChannels();
    const room = h.client.channel<{ name: string }>("room:1");
    void room.enter({ name: "Alice" });
    const first = room.update({ name: "A1" });
    const held = room.update({ name: "A2" });
    h.ws.okAll();
    await expect(first).resolves.toBeUndefined();
    revoke(h);
    vi.advanceTimersByTime(1_000);
    await expect(held).rejects.toMatchObject({ code: "forbidden" });
    await expect(room.update({ name: "A3" })).rejects.toMatchObject({ code: "forbidden" });
    expect(h.ws.summary()).toEqual(["update:room:1"]);
    h.client.release();
  });

  it("subscribe or enter asks again; a stale handle then releases nothing of the new references", async () => {
    const h = await inTwoChannels();
    const stale = h.client.channel("room:1");
    void stale.subscribe();
    revoke(h);
    const fresh = h.client.channel("room:1");
    const subscribed = fresh.subscribe();
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);
    h.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("bob")], more: false });
    h.ws.okAll();
    await expect(subscribed).resolves.toBeUndefined();
    expect([fresh.subscribed, fresh.revoked]).toEqual([true, null]);
    expect([stale.subscribed, stale.revoked]).toEqual([false, "forbidden"]);
    expect(fresh.members().map((m) => m.user)).toEqual(["bob"]);
    stale.release();
    vi.advanceTimersByTime(10_000);
    expect(h.ws.summary()).toEqual(["subscribe:room:1"]);

    // The stale handle enters: it asks again and is no longer revoked.
    void stale.enter({ name: "Alice" });
    expect(stale.revoked).toBe(null);
    expect(h.ws.frames("enter")).toMatchObject([{ channel: "room:1", data: { name: "Alice" } }]);
    h.client.release();
  });

  it("a linger cut short by the end does not cut short a later one", async () => {
    const h = await inTwoChannels();
    const first = h.client.channel("news");
    void first.subscribe();
    h.ws.okAll();
    first.release(); // lingers until 1,500 ms from now
    revoke(h, "news");
    vi.advanceTimersByTime(100);
    const again = h.client.channel("news");
    void again.subscribe();
    h.ws.okAll();
    vi.advanceTimersByTime(100);
    again.release(); // lingers until 1,700 ms from the start
    vi.advanceTimersByTime(1_400);
    expect(h.ws.summary()).toEqual(["subscribe:news", "subscribe:news"]);
    vi.advanceTimersByTime(200);
    expect(h.ws.summary()).toEqual(["subscribe:news", "subscribe:news", "unsubscribe:news"]);
    h.client.release();
  });

  it("a frame for a channel not held changes nothing", async () => {
    const h = await inTwoChannels();
    const events: UnsubscribedEvent[] = [];
    h.client.on("unsubscribed", (event) => events.push(event));
    h.ws.receive({ t: "unsubscribed", channel: "elsewhere", reason: "forbidden" });
    h.ws.receive({ t: "unsubscribed", channel: 7, reason: "forbidden" });
    expect(events).toEqual([]);
    expect(h.client.channel("room:1").members()).toHaveLength(2);
    h.client.release();
  });

  it("with shareAcrossTabs, ends for every tab that had it and the leader does not ask for it again", async () => {
    const browser = new FakeBrowser();
    const leaderTab = browser.tab();
    const leader = leaderTab.client();
    await settle();
    const follower = browser.tab().client();
    await settle();
    browser.ws.welcome();
    await settle();
    const mine = follower.channel("room:1");
    const theirs = leader.channel("room:1");
    void mine.enter({ name: "Alice" });
    void theirs.subscribe();
    await settle();
    browser.ws.receive({ t: "sync", channel: "room:1", seq: 0, members: [member("alice")], more: false });
    browser.ws.okAll();
    await settle();
    expect(mine.members()).toHaveLength(1);
    const events: string[] = [];
    follower.on("unsubscribed", ({ channel }) => events.push(`follower ${channel}`));
    leader.on("unsubscribed", ({ channel }) => events.push(`leader ${channel}`));

    browser.ws.receive({ t: "unsubscribed", channel: "room:1", reason: "forbidden" });
    await settle();
    expect(events.sort()).toEqual(["follower room:1", "leader room:1"]);
    expect([mine.revoked, theirs.revoked]).toEqual(["forbidden", "forbidden"]);
    expect([mine.members(), theirs.members()]).toEqual([[], []]);
    browser.ws.sent.length = 0;
    mine.release();
    theirs.release();
    vi.advanceTimersByTime(10_000);
    await settle();
    expect(browser.ws.summary()).toEqual([]);

    // Asked for again by the follower, it goes to the server again.
    void follower.channel("room:1").subscribe();
    await settle();
    expect(browser.ws.summary()).toEqual(["subscribe:room:1"]);
    follower.release();
    leader.release();
  });
});
