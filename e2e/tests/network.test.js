// The SDK in the browser through real outages: a TCP proxy in front of a page
// (see `startProxy` in ../lib.js) pauses or cuts its connection, the server is
// killed and restarted, tokens live shorter than the refresh lead and the
// page's clock is wrong. What others see is read from the wire (the frames
// their WebSockets received) and from the server's event feed. Run with
// ../run.sh.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  eventFeed,
  events,
  newPage,
  recordSockets,
  shortTokens,
  signIn,
  sleep,
  startProxy,
  until,
  waitConnected,
  waitMember,
  waitStatus,
  withSetup,
} from "../lib.js";

const ROOM = "room:lobby";

async function open(browser, pages) {
  const page = await newPage(browser);
  pages.push(page);
  return page;
}

/** Frames received since `since` that show `who` leaving or going offline. */
function departuresOnWire(recorder, who, since) {
  return recorder.frames({ dir: "in", since }).filter(({ frame: f }) =>
    (f.t === "leave" && f.user === who) ||
    (f.t === "diff" && (f.leaves ?? []).includes(who)) ||
    (f.t === "presence" && f.users?.[who]?.status === "offline"),
  );
}

/** Frames received since `since` that show `who` joining a channel. */
function arrivalsOnWire(recorder, who, since) {
  return recorder.frames({ dir: "in", since }).filter(({ frame: f }) =>
    (f.t === "join" && f.member?.user === who) ||
    (f.t === "diff" && (f.joins ?? []).some((m) => m.user === who)),
  );
}

/** What the page's SDK reported since event `mark` of `who` leaving, joining or going offline. */
async function flapsInSdk(page, who, mark) {
  return (await events(page)).slice(mark).filter(
    (e) =>
      ((e.kind === "leave" || e.kind === "join") && e.user === who) ||
      (e.kind === "presence" && e.user === who && e.status === "offline") ||
      (e.kind === "members" && e.channel === ROOM && !e.users.includes(who)),
  );
}

/** The feed's events since `mark` of `who` leaving or going offline. */
function departuresInFeed(feed, who, mark) {
  return feed.events.slice(mark).filter((e) => e.user === who && (e.type === "user.offline" || e.type === "member.left"));
}

function states(eventsList) {
  return eventsList.filter((e) => e.kind === "state").map((e) => e.state);
}

async function user(server, id) {
  const { status, body } = await server.api(`/v1/users/${id}`);
  assert.equal(status, 200);
  return body;
}

test("a short outage (connection cut, back within grace) goes unnoticed by others", async () => {
  await withSetup({ grace: 5000 }, async ({ server, browser, pages }) => {
    const proxy = await startProxy(server.base);
    try {
      const a = await open(browser, pages);
      const b = await open(browser, pages);
      const aWire = recordSockets(a);
      const bWire = recordSockets(b);
      const alice = await signIn(a, server, "Alice");
      const bob = await signIn(b, server, "Bob", { base: proxy.base });
      await waitMember(a, bob);
      await waitStatus(a, bob, "online");
      await waitMember(b, alice);
      const feed = await eventFeed(server);
      const aMark = (await events(a)).length;
      const bMark = (await events(b)).length;

      // The network goes: Bob's socket is destroyed, and so is the first
      // attempt to connect again.
      const cutAt = Date.now();
      proxy.cut();
      await b.waitForFunction(() => window.__demo.state === "reconnecting", null, { timeout: 5000 });
      assert.equal(await b.getAttribute("#conn-state", "data-state"), "reconnecting");
      await until(() => proxy.counts.refused >= 1, "a reconnect attempt during the outage", server.grace / 2);
      proxy.restore();
      await waitConnected(b, server.grace);
      const backAfter = Date.now() - cutAt;
      assert.ok(backAfter < server.grace, `back after ${backAfter} ms, grace is ${server.grace} ms`);

      // Resumed: the same connection, nothing entered again.
      assert.equal(bWire.sockets[0].closed, true, "the cut closed the socket");
      const welcomes = bWire.frames({ t: "welcome", since: cutAt });
      assert.equal(welcomes.length, 1, "one welcome after the cut (the refused attempts got none)");
      assert.equal(welcomes[0].frame.resumed, true, "the session was resumed");
      assert.deepEqual(states((await events(b)).slice(bMark)), ["reconnecting", "connected"]);
      await waitMember(b, alice);
      await waitMember(b, bob);

      // Past the grace window from the cut: a lost resume would have made
      // Bob leave by now. Alice saw nothing on the wire, nor did her SDK or
      // the server's feed.
      await sleep(cutAt + server.grace + 500 - Date.now());
      assert.deepEqual(departuresOnWire(aWire, bob, cutAt), [], "no leave or offline for Bob reached Alice");
      assert.deepEqual(arrivalsOnWire(aWire, bob, cutAt), [], "no join of Bob reached Alice");
      assert.deepEqual(await flapsInSdk(a, bob, aMark), [], "Alice's SDK reported no leave or join of Bob");
      assert.deepEqual(departuresInFeed(feed, bob, 0), [], "the server's feed has no departure of Bob");
      feed.close();
      const bobNow = await user(server, bob);
      assert.equal(bobNow.status, "online");
      assert.equal(bobNow.connections, 1);
    } finally {
      await proxy.close();
    }
  });
});

test("offline and online events with the connection cut: reconnecting, no token call while offline, back at once", async () => {
  await withSetup({ grace: 6000 }, async ({ server, browser, pages }) => {
    const proxy = await startProxy(server.base);
    try {
      const a = await open(browser, pages);
      const b = await open(browser, pages);
      // Tokens of a minute: the demo's provider then asks the token endpoint
      // on every connect (it keeps a token only while it has 2 min left).
      await shortTokens(b.context(), 60);
      // Every call of the token endpoint the page makes, on the network or not.
      await b.addInitScript(() => {
        window.__tokenCalls = [];
        const real = window.fetch;
        window.fetch = function (input, init) {
          if (String(input instanceof Request ? input.url : input).includes("/v1/dev/token")) window.__tokenCalls.push({ at: Date.now(), online: navigator.onLine });
          return real.call(this, input, init);
        };
      });
      const aWire = recordSockets(a);
      const bWire = recordSockets(b);
      const alice = await signIn(a, server, "Alice");
      const bob = await signIn(b, server, "Bob", { base: proxy.base });
      await waitMember(a, bob);
      await waitMember(b, alice);
      const aMark = (await events(a)).length;
      const calls = () => b.evaluate(() => window.__tokenCalls);
      const before = (await calls()).length;
      assert.ok(before >= 1, "tokens come from the endpoint");

      // The browser goes offline (its `offline` event) and the network with
      // it: the proxy destroys Bob's connection.
      const offAt = Date.now();
      await b.context().setOffline(true);
      proxy.cut();
      await b.waitForFunction(() => window.__demo.state === "reconnecting", null, { timeout: 3000 });
      await b.waitForSelector("#reconnecting:not([hidden])");
      assert.equal(await b.getAttribute("#conn-state", "data-state"), "reconnecting");
      assert.equal(proxy.open, 0);

      // Three seconds offline: longer than any reconnect delay while the
      // session may be resumed (a third of the grace window). Nothing is tried.
      await sleep(3000);
      assert.deepEqual((await calls()).slice(before), [], "no token endpoint call while offline");
      assert.equal(proxy.counts.refused, 0, "no connect attempt while offline");
      assert.equal(bWire.sockets.length, 1, "no new socket while offline");
      assert.equal(await b.getAttribute("#conn-state", "data-state"), "reconnecting");
      assert.equal(await b.isVisible("#reconnecting"), true);

      // Back online: it connects at once, with one fresh token, and resumes.
      proxy.restore();
      const onAt = Date.now();
      await b.context().setOffline(false);
      await waitConnected(b, 5000);
      const took = Date.now() - onAt;
      assert.ok(took < 3000, `connected ${took} ms after coming online`);
      assert.equal(await b.isVisible("#reconnecting"), false);
      const after = (await calls()).slice(before);
      assert.equal(after.length, 1, "one token endpoint call, once online");
      assert.ok(after[0].at >= onAt && after[0].online, "the call came after the online event");
      assert.equal(bWire.frames({ t: "welcome", since: onAt }).at(-1)?.frame.resumed, true);
      await waitMember(b, alice);
      await waitStatus(b, alice, "online");

      // Within grace: Alice saw nothing.
      assert.ok(Date.now() - offAt < server.grace);
      assert.deepEqual(departuresOnWire(aWire, bob, offAt), []);
      assert.deepEqual(await flapsInSdk(a, bob, aMark), []);
    } finally {
      await proxy.close();
    }
  });
});

test("back online on a connection that died: the 3 s ping check replaces it", async () => {
  // The default 20 s heartbeat: without the check, the page would notice the
  // dead connection only after 40 s of silence.
  await withSetup({ grace: 8000 }, async ({ server, browser, pages }) => {
    const proxy = await startProxy(server.base);
    try {
      const a = await open(browser, pages);
      const b = await open(browser, pages);
      const aWire = recordSockets(a);
      const bWire = recordSockets(b);
      const alice = await signIn(a, server, "Alice");
      const bob = await signIn(b, server, "Bob", { base: proxy.base });
      await waitMember(a, bob);
      await waitMember(b, alice);

      // Once Bob's socket is quiet (the occupancy updates of his arrival,
      // at most one a second, are in: the check must not take one of them
      // for its answer), the path under it dies (it stays open but nothing
      // goes through; new connections would work), and the browser goes
      // offline and back.
      const lastIn = () => bWire.frames({ dir: "in" }).at(-1)?.at ?? 0;
      await until(() => Date.now() - lastIn() > 1500, "Bob's socket to be quiet", 10000);
      proxy.pause();
      const offAt = Date.now();
      await b.context().setOffline(true);
      await b.waitForFunction(() => window.__demo.state === "reconnecting", null, { timeout: 3000 });
      const onAt = Date.now();
      await b.context().setOffline(false);

      // The page pings on the old socket, gets no answer within 3 s, and
      // opens a new one, which resumes the session.
      await waitConnected(b, 8000);
      const took = Date.now() - onAt;
      assert.ok(took >= 2500 && took < 6000, `replaced ${took} ms after coming online`);
      const pings = bWire.sockets[0].frames.filter((f) => f.dir === "out" && f.frame.t === "ping" && f.at >= onAt);
      assert.ok(pings.length >= 1, "a ping on the old socket once online");
      assert.equal(bWire.sockets.length, 2, "a new socket");
      assert.equal(bWire.frames({ t: "welcome", since: onAt }).at(-1)?.frame.resumed, true);
      await waitMember(b, alice);
      assert.deepEqual(departuresOnWire(aWire, bob, offAt), []);
      assert.ok(Date.now() - offAt < server.grace);
      proxy.restore();
    } finally {
      await proxy.close();
    }
  });
});

/**
 * Three people in the room; the server ends with `signal` and starts again on
 * the same data dir. Everyone is back inside the grace window, and nobody
 * saw anybody leave.
 */
async function restartUnnoticed(signal, resumed) {
  await withSetup({ grace: 6000 }, async ({ server, browser, pages }) => {
    const people = [];
    for (const name of ["Alice", "Bob", "Carol"]) {
      const page = await open(browser, pages);
      const wire = recordSockets(page);
      people.push({ page, wire, user: await signIn(page, server, name) });
    }
    const users = people.map((p) => p.user);
    for (const { page } of people) for (const u of users) await waitMember(page, u);
    const marks = await Promise.all(people.map(({ page }) => events(page).then((e) => e.length)));

    const downAt = Date.now();
    await server.kill(signal);
    await server.restart();
    const feed = await eventFeed(server);
    for (const { page } of people) await waitConnected(page, server.grace);
    for (const { page } of people) for (const u of users) await waitMember(page, u);
    const backAfter = Date.now() - downAt;
    assert.ok(backAfter < server.grace, `everyone back after ${backAfter} ms, grace is ${server.grace} ms`);
    for (const { wire } of people) {
      const welcome = wire.frames({ t: "welcome", since: downAt }).at(-1)?.frame;
      assert.equal(welcome?.resumed, resumed, `welcome after the restart: resumed ${welcome?.resumed}`);
    }

    // Past the grace window of the restart: whoever the new server had not
    // seen back would have left by now.
    await sleep(downAt + server.grace + 1000 - Date.now());
    for (const [i, { page, wire, user: me }] of people.entries()) {
      for (const other of users.filter((u) => u !== me)) {
        assert.deepEqual(departuresOnWire(wire, other, downAt), [], `${me} got no leave or offline of ${other}`);
        const sdk = (await flapsInSdk(page, other, marks[i])).filter((e) => e.kind !== "join");
        assert.deepEqual(sdk, [], `${me}'s SDK reported no leave of ${other}`);
      }
      assert.equal(await page.getAttribute("#conn-state", "data-state"), "connected");
    }
    for (const u of users) assert.deepEqual(departuresInFeed(feed, u, 0), [], `the new server's feed has no departure of ${u}`);
    feed.close();
    for (const u of users) assert.equal((await user(server, u)).status, "online");
    const { body } = await server.api(`/v1/channels/${encodeURIComponent(ROOM)}/members`);
    assert.deepEqual(body.members.map((m) => m.user).sort(), [...users].sort());
  });
}

test("kill -9 and restart on the same data dir: nobody back within grace is shown leaving", async () => {
  // After a crash the sessions are gone: the pages enter again (resumed: false).
  await restartUnnoticed("SIGKILL", false);
});

test("SIGTERM and restart: the sessions resume and nobody is shown leaving", async () => {
  await restartUnnoticed("SIGTERM", true);
});

test("tokens shorter than the refresh lead, and a page clock 100 s off: no refresh storm, no 4401", async () => {
  // 9 s tokens against the SDK's default 30 s lead, each page with its own
  // token endpoint count; two pages' clocks are 100 s off (Date.now).
  const TTL = 9;
  // Refreshes come every ~5 s: a window half-way between two of them (not
  // at the fourth, where its token call may be counted and its frame not
  // yet) sees three whole refreshes.
  const WINDOW_MS = 17500;
  await withSetup({}, async ({ server, browser, pages }) => {
    const people = [];
    for (const [name, skew] of [["Bob", 0], ["Carol", 100000], ["Dave", -100000]]) {
      const page = await open(browser, pages);
      const tokens = await shortTokens(page.context(), TTL);
      if (skew) {
        await page.addInitScript((ms) => {
          const real = Date.now;
          Date.now = () => real() + ms;
        }, skew);
      }
      const wire = recordSockets(page);
      people.push({ name, skew, page, tokens, wire });
    }
    for (const p of people) p.user = await signIn(p.page, server, p.name);
    for (const p of people) {
      if (p.skew) assert.ok(Math.abs((await p.page.evaluate(() => Date.now())) - Date.now() - p.skew) < 2000, "the page's clock is off");
    }

    // More than two token lifetimes for each page: without a working
    // refresh the server would close every connection 4401 after 9 s.
    const welcomedAt = (wire) => wire.frames({ t: "welcome", dir: "in" })[0].at;
    await sleep(Math.max(...people.map((p) => welcomedAt(p.wire))) + WINDOW_MS - Date.now());
    for (const { name, page, tokens, wire, user: id } of people) {
      const sent = wire.frames({ t: "refresh", dir: "out" });
      const replies = () => wire.frames({ dir: "in" }).filter((f) => sent.some((s) => s.frame.id === f.frame.id) && (f.frame.t === "ok" || f.frame.t === "error"));
      await until(() => replies().length >= sent.length, `${name}: the replies to the refreshes`, 3000);
      const gaps = [sent[0]?.at - welcomedAt(wire), ...sent.slice(1).map((f, i) => f.at - sent[i].at)];
      const detail = `${name}: ${sent.length} refreshes, ${gaps.join(", ")} ms apart (the first after the welcome), ${tokens.calls.length} token calls`;
      // One refresh about every 5 s (half-way through the token's life, and
      // never sooner than 5 s): not a storm, and each before the token ends.
      assert.ok(sent.length >= 3, detail);
      assert.ok(gaps.every((g) => g >= 4000 && g <= 8000), detail);
      // Signing in takes one, connecting one, and each refresh one.
      assert.ok(tokens.calls.length <= sent.length + 2, detail);
      assert.deepEqual(replies().map((f) => f.frame.t), sent.map(() => "ok"), `${name}: every refresh accepted`);
      assert.deepEqual(wire.frames({ t: "error", dir: "in" }), [], `${name}: no error frames`);
      assert.equal(wire.sockets.length, 1, `${name}: one socket all along (no 4401 close, no reconnect)`);
      assert.equal(wire.sockets[0].closed, false);
      assert.deepEqual(states(await events(page)), ["connecting", "connected"], `${name}: connected all along`);
      const now = await user(server, id);
      assert.equal(now.status, "online");
      assert.equal(now.connections, 1);
    }
  });
});
