// The demo page against a real server: presence as two people in two
// browsers see it. Run with ../run.sh.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  events,
  newPage,
  signIn,
  sleep,
  startProxy,
  waitConnected,
  waitMember,
  waitStatus,
  withSetup,
} from "../lib.js";

const ROOM = "room:lobby";
const EVERYONE = "demo:everyone";


async function open(browser, pages) {
  const page = await newPage(browser);
  pages.push(page);
  return page;
}

async function roomMembers(server) {
  const { status, body } = await server.api(`/v1/channels/${encodeURIComponent(ROOM)}/members`);
  assert.equal(status, 200);
  return body.members.map((m) => m.user).sort();
}

test("two users see each other; a closed page leaves only after the grace window", async () => {
  await withSetup({}, async ({ server, browser, pages }) => {
    const a = await open(browser, pages);
    const b = await open(browser, pages);
    const alice = await signIn(a, server, "Alice");
    const bob = await signIn(b, server, "Bob");
    assert.equal(alice, "alice");
    assert.equal(bob, "bob");

    await waitMember(a, bob);
    await waitMember(b, alice);
    await waitStatus(a, bob, "online");
    await waitStatus(b, alice, "online");
    assert.equal(await a.textContent("#room-title"), ROOM);
    assert.match(await a.textContent("#room-count"), /^2 people/);

    pages.splice(pages.indexOf(b), 1);
    const closedAt = Date.now();
    await b.context().close();

    // Shortly before the grace window ends, Bob is still there for Alice.
    await sleep(server.grace - 400);
    const during = await a.evaluate((u) => ({ member: window.__demo.members().includes(u), status: window.__demo.status(u) }), bob);
    assert.deepEqual(during, { member: true, status: "online" }, "still present inside the grace window");
    assert.ok(await a.$(`#members li[data-user="${bob}"]`), "still listed inside the grace window");

    // Then he leaves (timeout) and shows offline.
    await waitMember(a, bob, false, server.grace + 10000);
    const goneAt = Date.now();
    assert.ok(goneAt - closedAt >= server.grace, `left after ${goneAt - closedAt} ms, grace is ${server.grace} ms`);
    await waitStatus(a, bob, "offline");

    const seen = await events(a);
    const leave = seen.find((e) => e.kind === "leave" && e.user === bob && e.channel === ROOM);
    assert.ok(leave, "a leave event for Bob");
    assert.equal(leave.reason, "timeout");
    assert.ok(leave.at - closedAt >= server.grace - 50, `leave ${leave.at - closedAt} ms after the close`);
    assert.deepEqual(await roomMembers(server), [alice]);
  });
});

test("a page refresh never shows the user leaving or offline to others", async () => {
  await withSetup({}, async ({ server, browser, pages }) => {
    const a = await open(browser, pages);
    const b = await open(browser, pages);
    const alice = await signIn(a, server, "Alice");
    const bob = await signIn(b, server, "Bob");
    await waitMember(a, bob);
    await waitStatus(a, bob, "online");
    const mark = (await events(a)).length;

    for (let i = 0; i < 3; i++) {
      await b.reload();
      // Signed in again from sessionStorage, no form.
      await waitConnected(b);
      assert.equal(await b.isVisible("#signin"), false);
      await waitMember(b, bob);
      await waitMember(b, alice);
      // Resumed: the old connection was taken over, not a second one made.
      const { body } = await server.api(`/v1/users/${bob}`);
      assert.equal(body.status, "online");
      assert.equal(body.connections, 1, "the reload resumed the same connection");
      const states = (await events(b)).filter((e) => e.kind === "state").map((e) => e.state);
      assert.deepEqual(states, ["connecting", "connected"]);
    }

    // Past a whole grace window after the last reload: a lost resume would
    // have made Bob leave by now.
    await sleep(server.grace + 700);
    const seen = (await events(a)).slice(mark);
    const bad = seen.filter(
      (e) =>
        (e.kind === "leave" && e.user === bob) ||
        (e.kind === "presence" && e.user === bob && e.status !== "online") ||
        (e.kind === "members" && (e.channel === ROOM || e.channel === EVERYONE) && !e.users.includes(bob)),
    );
    assert.deepEqual(bad, [], "Alice never saw Bob leave or go offline");
    await waitMember(a, bob);
    await waitStatus(a, bob, "online");
    assert.deepEqual(await roomMembers(server), [alice, bob]);
  });
});

test("going offline and back online recovers the connection and the member list", async () => {
  // A short heartbeat so a dead network is noticed in about 2 s. Bob's page
  // goes through a proxy that can take his network away for real.
  await withSetup({ grace: 3000, heartbeat: 1000 }, async ({ server, browser, pages }) => {
    const proxy = await startProxy(server.base);
    try {
      const a = await open(browser, pages);
      const b = await open(browser, pages);
      const alice = await signIn(a, server, "Alice");
      const bob = await signIn(b, server, "Bob", { base: proxy.base });
      await waitMember(a, bob);
      await waitMember(b, alice);

      // Emulated offline (context.setOffline): Chromium stops the page's
      // frames (its network stack still answers the server's pings, so the
      // server keeps the connection). The SDK's heartbeat notices, and it
      // reconnects and resumes when the network is back: nobody sees a thing.
      const mark = (await events(a)).length;
      await b.context().setOffline(true);
      await b.waitForFunction(() => window.__demo.state === "reconnecting", null, { timeout: 10000 });
      assert.equal(await b.getAttribute("#conn-state", "data-state"), "reconnecting");
      assert.equal(await b.isVisible("#reconnecting"), true);
      await b.context().setOffline(false);
      await waitConnected(b);
      assert.equal(await b.getAttribute("#conn-state", "data-state"), "connected");
      assert.equal(await b.isVisible("#reconnecting"), false);
      await waitMember(b, alice);
      await waitMember(b, bob);
      await waitStatus(b, alice, "online");
      assert.deepEqual(
        (await events(a)).slice(mark).filter((e) => e.kind === "leave" && e.user === bob),
        [],
        "a blip shows no leave",
      );
      assert.deepEqual(await roomMembers(server), [alice, bob]);

      // A real outage longer than the grace window (offline, and nothing
      // goes through Bob's connection any more): the server notices, Bob
      // leaves for Alice after the grace window, and he is back, entered
      // again, once his network is.
      await b.context().setOffline(true);
      proxy.pause();
      await b.waitForFunction(() => window.__demo.state === "reconnecting", null, { timeout: 10000 });
      await waitMember(a, bob, false, 20000);
      await waitStatus(a, bob, "offline");
      proxy.restore();
      await b.context().setOffline(false);
      await waitConnected(b, 20000);
      await waitMember(b, alice);
      await waitMember(b, bob);
      await waitMember(a, bob);
      await waitStatus(a, bob, "online");
      await waitStatus(b, alice, "online");
      assert.deepEqual(await roomMembers(server), [alice, bob]);
      assert.deepEqual((await b.evaluate(() => window.__demo.members())).sort(), [alice, bob]);
    } finally {
      await proxy.close();
    }
  });
});
