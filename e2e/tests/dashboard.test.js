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

    // Bob can join again.
    await b.click("#rejoin");
    await waitConnected(b);
    await waitMember(a, bob);
    await admin.waitForSelector(`#users tr[data-user="${bob}"]`);

    for (const page of [admin, a, b, c]) assert.deepEqual(page.errors, [], "no errors in the page's console");
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
