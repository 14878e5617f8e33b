// The dashboard against a real server: API-key login, users, channels and
// members, the live event feed, the chart, and kicking a user. Also takes
// the screenshots of the demo and the dashboard. Run with ../run.sh.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  API_KEY,
  events,
  launchBrowser,
  newPage,
  screenshotPath,
  signIn,
  startServer,
  waitConnected,
  waitMember,
  waitStatus,
} from "../lib.js";

test("dashboard: log in, see users, channels and members live, kick a user", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const admin = await newPage(browser, { width: 1280, height: 1240 });
    await admin.goto(server.base + "/admin");

    // A wrong key is refused, the right one opens the dashboard.
    await admin.fill("#api-key", "not-the-key");
    await admin.click("#login-button");
    await admin.waitForFunction(() => document.getElementById("login-error").textContent.includes("not this server's API key"));
    admin.errors.length = 0; // Chromium logs the 403 of the wrong key
    await admin.fill("#api-key", API_KEY);
    await admin.click("#login-button");
    await admin.waitForSelector("#dashboard:not([hidden])");
    await admin.waitForSelector('#feed-state[data-state="live"]');
    await admin.waitForSelector("#users-empty:not([hidden])");
    assert.equal(await admin.evaluate((k) => sessionStorage.getItem(k), "presenced-admin:key"), JSON.stringify(API_KEY));

    // People arrive while the dashboard watches.
    const a = await newPage(browser);
    const b = await newPage(browser);
    const c = await newPage(browser);
    const alice = await signIn(a, server, "Alice Martin");
    const bob = await signIn(b, server, "Bob");
    const carol = await signIn(c, server, "Carol");
    assert.equal(alice, "alice-martin");
    await c.click("#set-away");
    await waitMember(a, bob);
    await waitMember(a, carol);
    await waitStatus(a, carol, "away");
    await waitStatus(b, carol, "away");
    // Bob also takes a look at another room and comes back.
    await b.click('#room-chips [data-room="design"]');
    await b.waitForFunction(() => window.__demo.room === "design" && window.__demo.members().includes("bob"));
    await b.click('#room-chips [data-room="lobby"]');
    await waitMember(b, bob);

    // Users, with status and connection counts.
    for (const user of [alice, bob, carol]) await admin.waitForSelector(`#users tr[data-user="${user}"]`);
    await admin.waitForSelector(`#users tr[data-user="${carol}"][data-status="away"]`);
    await admin.waitForSelector(`#users tr[data-user="${alice}"][data-status="online"]`);
    assert.equal(await admin.isVisible("#users-empty"), false);

    // Channels with occupancy; a channel's members.
    await admin.waitForSelector('#channels tr[data-channel="room:lobby"]');
    await admin.waitForSelector('#channels tr[data-channel="demo:everyone"]');
    await admin.waitForFunction(() => document.querySelector('#channels tr[data-channel="room:lobby"] td.num')?.textContent === "3");
    await admin.click('#channels tr[data-channel="room:lobby"]');
    for (const user of [alice, bob, carol]) await admin.waitForSelector(`#members tr[data-user="${user}"]`);
    assert.equal(await admin.textContent("#members-title"), "Members of room:lobby");

    // The live feed saw them arrive.
    await admin.waitForSelector(`#feed li[data-type="user.online"][data-user="${alice}"]`);
    await admin.waitForSelector(`#feed li[data-type="member.joined"][data-user="${bob}"]`);
    await admin.waitForSelector(`#feed li[data-type="user.away"][data-user="${carol}"]`);
    await admin.waitForSelector(`#feed li[data-type="member.left"][data-user="${bob}"]`);

    // The chart has a few samples (one every 5 s, plus "now").
    await admin.waitForFunction(() => document.querySelectorAll("#chart circle.point-connections").length >= 3, null, { timeout: 20000 });
    await admin.waitForFunction(() => document.getElementById("stat-users").textContent === "3");
    assert.equal(await admin.textContent("#stat-connections"), "3");

    // Dan drops by and signs out: the dashboard lists him as recently
    // offline (the API lists only online and away users), with the last
    // seen time the server has for him.
    const d = await newPage(browser);
    const dan = await signIn(d, server, "Dan");
    await admin.waitForSelector(`#users tr[data-user="${dan}"]`);
    await d.click("#sign-out");
    await admin.waitForSelector(`#users tr[data-user="${dan}"]`, { state: "detached" });
    const danRow = `#offline-users tr[data-user="${dan}"][data-status="offline"]`;
    await admin.waitForSelector(danRow);
    const danNow = (await server.api(`/v1/users/${dan}`)).body;
    assert.equal(danNow.status, "offline");
    await admin.waitForFunction(
      ([sel, lastSeen]) => document.querySelector(`${sel} td.last-seen`)?.title === lastSeen,
      [danRow, danNow.last_seen],
    );
    assert.match(await admin.textContent(`${danRow} td.last-seen`), /^(just now|\d+ s ago) · \d\d:\d\d:\d\d$/);
    assert.match(await admin.textContent("#offline-note"), /GET \/v1\/users/);
    assert.equal(await admin.isVisible("#offline-empty"), false);
    await d.context().close();

    // Screenshots of both pages in this state.
    await a.screenshot({ path: screenshotPath("demo.png") });
    await admin.screenshot({ path: screenshotPath("dashboard.png"), fullPage: true });

    // Kick Bob (the button asks for a confirmation).
    const kick = `#users tr[data-user="${bob}"] button[data-kick]`;
    await admin.click(kick);
    await admin.waitForFunction((sel) => document.querySelector(sel)?.textContent === "Confirm", kick);
    await admin.click(kick);

    // Bob's page says so, and stops.
    await b.waitForSelector("#kicked:not([hidden])");
    await b.waitForFunction(() => window.__demo.state === "disconnected");
    assert.equal(await b.getAttribute("#conn-state", "data-state"), "disconnected");
    const kicked = (await events(b)).find((e) => e.kind === "kicked");
    assert.equal(kicked?.code, 4409);

    // It shows him disconnected, not a roster of people who all look
    // offline ("last seen never") or an empty room that is "Joining…".
    await b.waitForSelector("#room-off:not([hidden])");
    await b.waitForSelector("#people-off:not([hidden])");
    const kickedView = () =>
      b.evaluate(() => ({
        members: document.querySelectorAll("#members li").length,
        people: document.querySelectorAll("#people li").length,
        joining: !document.getElementById("members-empty").hidden,
        text: document.getElementById("app").innerText,
      }));
    let view = await kickedView();
    assert.deepEqual([view.members, view.people, view.joining], [0, 0, false]);
    assert.doesNotMatch(view.text, /last seen never|Joining…/);
    assert.equal(await b.textContent("#room-count"), "not connected");

    // Everyone else sees him leave at once (no grace), kicked.
    await waitMember(a, bob, false, 5000);
    await waitStatus(a, bob, "offline");
    const leave = (await events(a)).filter((e) => e.kind === "leave" && e.user === bob && e.channel === "room:lobby").at(-1);
    assert.equal(leave?.reason, "kicked");

    // The dashboard and the API show him offline.
    await admin.waitForSelector(`#users tr[data-user="${bob}"]`, { state: "detached" });
    await admin.waitForSelector(`#feed li[data-type="user.offline"][data-user="${bob}"]`);
    await admin.waitForSelector(`#members tr[data-user="${bob}"]`, { state: "detached" });
    const { status, body } = await server.api(`/v1/users/${bob}`);
    assert.equal(status, 200);
    assert.equal(body.status, "offline");
    assert.equal(body.connections, 0);

    // The dashboard lists him as recently offline, kicked.
    const bobRow = `#offline-users tr[data-user="${bob}"][data-status="offline"]`;
    await admin.waitForSelector(bobRow);
    assert.match(await admin.textContent(bobRow), /kicked/);

    // Still the disconnected view on Bob's page after it redrew its lists
    // (every 5 s, for the relative times).
    const drawn = await b.evaluate(() => window.__demo.peopleRenders);
    await b.waitForFunction((n) => window.__demo.peopleRenders > n, drawn, { timeout: 8000 });
    view = await kickedView();
    assert.deepEqual([view.members, view.people, view.joining], [0, 0, false]);
    assert.doesNotMatch(view.text, /last seen never|Joining…/);

    // Bob can join again: the lists are back, and he is not offline on the dashboard.
    await b.click("#rejoin");
    await waitConnected(b);
    await waitMember(a, bob);
    await waitMember(b, alice);
    await waitStatus(b, carol, "away");
    assert.equal(await b.isVisible("#room-off"), false);
    assert.equal(await b.isVisible("#people-off"), false);
    await admin.waitForSelector(`#users tr[data-user="${bob}"]`);
    await admin.waitForSelector(bobRow, { state: "detached" });
    await admin.waitForSelector(danRow);

    for (const page of [admin, a, b, c, d]) assert.deepEqual(page.errors, [], "no errors in the page's console");
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("demo without --dev-tokens explains how to turn them on", async () => {
  const server = await startServer({ devTokens: false });
  const browser = await launchBrowser();
  try {
    const page = await newPage(browser);
    await page.goto(server.base + "/");
    await page.waitForSelector("#dev-off:not([hidden])");
    assert.equal(await page.isVisible("#signin"), false);
    assert.match(await page.textContent("#dev-off"), /--dev-tokens/);
    const res = await fetch(server.base + "/v1/dev/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "mallory" }),
    });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.code, "not_found");
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

/** Asserts the page is no wider than its viewport, naming what sticks out. */
async function fitsWidth(page, what) {
  const { width, scrollWidth, out } = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    for (const node of document.querySelectorAll("body *")) {
      const r = node.getBoundingClientRect();
      if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5)) out.push(`${node.tagName.toLowerCase()}#${node.id}.${node.className} ${Math.round(r.left)}–${Math.round(r.right)}`);
    }
    return { width, scrollWidth: document.documentElement.scrollWidth, out: out.slice(0, 8) };
  });
  assert.equal(width, 390);
  assert.ok(scrollWidth <= width, `${what}: the page is ${scrollWidth} px wide on a ${width} px screen; out: ${out.join(", ")}`);
}

/** Asserts every cell of every visible table lies inside its card: nothing is clipped. */
async function tablesInside(page) {
  const clipped = await page.evaluate(() => {
    const bad = [];
    for (const table of document.querySelectorAll("#dashboard table")) {
      if (table.offsetParent === null) continue;
      const card = table.closest(".card").getBoundingClientRect();
      for (const cell of table.querySelectorAll("td, th")) {
        const r = cell.getBoundingClientRect();
        if (r.width > 0 && (r.right > card.right + 0.5 || r.left < card.left - 0.5)) bad.push(`${table.closest(".card").id}: ${cell.textContent.trim() || cell.innerHTML.slice(0, 40)} ${Math.round(r.left)}–${Math.round(r.right)}`);
      }
    }
    return bad.slice(0, 8);
  });
  assert.deepEqual(clipped, [], "no table cell outside its card");
}

test("a 390 px phone: neither the demo nor the dashboard is wider than the screen; the tables collapse", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  const phone = { width: 390, height: 844 };
  try {
    const b = await newPage(browser);
    const bob = await signIn(b, server, "Bob");

    // The demo: the sign-in form, then signed in with a long name.
    const a = await newPage(browser, phone);
    await a.goto(server.base + "/");
    await a.waitForSelector("#signin:not([hidden])");
    await fitsWidth(a, "demo, sign-in");
    const alex = await signIn(a, server, "Alexandra Konstantinopoulou");
    await waitMember(a, bob);
    await waitStatus(a, bob, "online");
    await fitsWidth(a, "demo, connected");
    assert.ok(await a.isVisible("#sign-out"));
    await a.screenshot({ path: screenshotPath("demo-phone.png"), fullPage: true });

    // Reconnecting (the longest state, and a banner).
    await a.context().setOffline(true);
    await a.waitForSelector("#reconnecting:not([hidden])");
    await fitsWidth(a, "demo, reconnecting");
    await a.context().setOffline(false);
    await waitConnected(a);

    // The dashboard, with people in every table (Carol has gone offline).
    const c = await newPage(browser);
    const carol = await signIn(c, server, "Carol");
    const admin = await newPage(browser, phone);
    await admin.goto(server.base + "/admin");
    await admin.waitForSelector("#login:not([hidden])");
    await fitsWidth(admin, "dashboard, sign-in");
    await admin.fill("#api-key", API_KEY);
    await admin.click("#login-button");
    await admin.waitForSelector('#feed-state[data-state="live"]');
    await c.click("#sign-out");
    await admin.waitForSelector(`#offline-users tr[data-user="${carol}"]`);
    for (const user of [alex, bob]) await admin.waitForSelector(`#users tr[data-user="${user}"]`);
    await admin.click('#channels tr[data-channel="room:lobby"]');
    for (const user of [alex, bob]) await admin.waitForSelector(`#members tr[data-user="${user}"]`);
    await admin.waitForSelector(`#feed li[data-type="user.offline"][data-user="${carol}"]`);
    await fitsWidth(admin, "dashboard");
    await tablesInside(admin);
    // The kick button is on the screen, not in a part of the table scrolled away.
    const kick = await admin.$(`#users tr[data-user="${bob}"] button[data-kick]`);
    const box = await kick.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 390, `the kick button is at ${box.x}–${box.x + box.width}`);
    await admin.screenshot({ path: screenshotPath("dashboard-phone.png"), fullPage: true });

    // Kicked: the demo's banner and disconnected lists fit too.
    await admin.click(`#users tr[data-user="${alex}"] button[data-kick]`);
    await admin.click(`#users tr[data-user="${alex}"] button[data-kick]`);
    await a.waitForSelector("#kicked:not([hidden])");
    await a.waitForSelector("#people-off:not([hidden])");
    await fitsWidth(a, "demo, kicked");

    for (const page of [a, b, c, admin]) assert.deepEqual(page.errors, [], "no errors in the page's console");
  } finally {
    await browser.close();
    await server.stop();
  }
});
