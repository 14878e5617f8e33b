// Tabs sharing one connection (the SDK's `shareAcrossTabs`, the demo's
// `?share=1`): two tabs of one browser are one socket to the server, and
// closing the tab that holds it goes unnoticed by everyone else. Run with
// ../run.sh.
import assert from "node:assert/strict";
import { test } from "node:test";
import { events, newPage, signIn, sleep, waitConnected, waitMember, waitStatus, withSetup } from "../lib.js";

const ROOM = "room:lobby";
const EVERYONE = "demo:everyone";
const SHARE = "?share=1";


async function open(browser, pages, options) {
  const page = await newPage(browser, options);
  pages.push(page);
  return page;
}

/** Records the WebSockets to the server that `page` opens. */
function recordSockets(page, sockets) {
  page.on("websocket", (ws) => {
    if (new URL(ws.url()).pathname === "/v1/ws") sockets.push({ page, ws });
  });
}

async function roomMembers(server) {
  const { status, body } = await server.api(`/v1/channels/${encodeURIComponent(ROOM)}/members`);
  assert.equal(status, 200);
  return body.members.map((m) => m.user).sort();
}

async function user(server, id) {
  const { status, body } = await server.api(`/v1/users/${id}`);
  assert.equal(status, 200);
  return body;
}

async function until(check, what, timeout = 10000) {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** What Alice's page saw of `who` leaving or going offline since `mark`. */
async function departures(page, who, mark) {
  return (await events(page)).slice(mark).filter(
    (e) =>
      (e.kind === "leave" && e.user === who) ||
      (e.kind === "presence" && e.user === who && e.status === "offline") ||
      (e.kind === "members" && (e.channel === ROOM || e.channel === EVERYONE) && !e.users.includes(who)),
  );
}

/** Alice in a browser of her own; Bob in two tabs of one browser, sharing. */
async function aliceAndTwoBobTabs(server, browser, pages) {
  const a = await open(browser, pages);
  const alice = await signIn(a, server, "Alice");
  const sockets = [];
  const b1 = await open(browser, pages);
  const b2 = await open(browser, pages, { context: b1.context() });
  recordSockets(b1, sockets);
  recordSockets(b2, sockets);
  const bob = await signIn(b1, server, "Bob", { query: SHARE });
  assert.equal(await signIn(b2, server, "Bob", { query: SHARE }), bob);
  for (const page of [b1, b2]) {
    assert.equal(await page.evaluate(() => window.__demo.shared), true);
    await waitMember(page, alice);
    await waitMember(page, bob);
    await waitStatus(page, alice, "online");
  }
  await waitMember(a, bob);
  await waitStatus(a, bob, "online");
  return { a, b1, b2, alice, bob, sockets };
}

test("two tabs share one connection; closing the tab that holds it goes unnoticed", async () => {
  await withSetup({}, async ({ server, browser, pages }) => {
    const { a, b1, b2, alice, bob, sockets } = await aliceAndTwoBobTabs(server, browser, pages);

    // One WebSocket for both of Bob's tabs, opened by the first.
    assert.equal(sockets.length, 1, "one WebSocket for two tabs");
    assert.equal(sockets[0].page, b1);
    assert.equal((await user(server, bob)).connections, 1, "the server sees one connection of Bob's");
    const stats = await server.api("/v1/stats");
    assert.equal(stats.body.now.connections, 2, "Alice's and Bob's shared one");
    assert.match(await a.textContent(`#members li[data-user="${bob}"] .sub`), /^1 tab/);
    const mark = (await events(a)).length;

    // The tab without the socket reloads: it joins the shared connection again.
    await b2.reload();
    await waitConnected(b2);
    await waitMember(b2, alice);
    await waitMember(b2, bob);
    assert.equal(sockets.length, 1, "a follower's reload opens no socket");

    // The tab with the socket closes: the other one takes over within the
    // grace window, opening the only socket, and keeps working.
    assert.deepEqual(b1.errors, []);
    pages.splice(pages.indexOf(b1), 1);
    const closedAt = Date.now();
    await b1.close();
    await until(() => sockets.length === 2, "the other tab to open the socket", 5000);
    const tookOver = Date.now() - closedAt;
    assert.equal(sockets[1].page, b2);
    assert.ok(tookOver < server.grace, `took over in ${tookOver} ms, grace is ${server.grace} ms`);
    await waitConnected(b2);
    await waitMember(b2, alice);
    await waitMember(b2, bob);
    await waitStatus(b2, alice, "online");

    // It can change Bob's status (away once the old connection's grace has ended).
    await b2.click("#set-away");
    await waitStatus(a, bob, "away");
    await waitStatus(b2, bob, "away");
    await b2.click("#set-online");
    await waitStatus(a, bob, "online");

    // Past a whole grace window: Alice never saw Bob leave or go offline,
    // and Bob is one connection again.
    await sleep(server.grace + 700);
    assert.deepEqual(await departures(a, bob, mark), [], "Alice never saw Bob leave or go offline");
    await waitMember(a, bob);
    const bobNow = await user(server, bob);
    assert.equal(bobNow.status, "online");
    assert.equal(bobNow.connections, 1);
    // (A closed page's WebSocket never reports its close to playwright: count the open pages'.)
    assert.equal(sockets.filter((s) => !s.page.isClosed() && !s.ws.isClosed()).length, 1, "one open WebSocket");
    assert.deepEqual(await roomMembers(server), [alice, bob]);
  });
});

test("signing out in one shared tab signs out every tab", async () => {
  await withSetup({}, async ({ server, browser, pages }) => {
    const { a, b1, b2, bob } = await aliceAndTwoBobTabs(server, browser, pages);
    const mark = (await events(a)).length;
    // Sign out in the tab that does not hold the socket.
    await b2.click("#sign-out");
    await b1.waitForFunction(() => window.__demo.state === "disconnected", null, { timeout: 5000 });
    // No grace window: Alice sees Bob leave (logout) at once, and offline.
    await waitMember(a, bob, false, server.grace);
    await waitStatus(a, bob, "offline");
    const leave = (await events(a)).slice(mark).find((e) => e.kind === "leave" && e.user === bob && e.channel === ROOM);
    assert.equal(leave?.reason, "logout");
    const bobNow = await user(server, bob);
    assert.equal(bobNow.status, "offline");
    assert.equal(bobNow.connections, 0);
  });
});
