// Helpers of the end-to-end tests: a real presenced server per test (temp
// data dir, dev tokens, short grace) and headless Chromium through
// playwright-core (Debian's chromium; nothing is downloaded).
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "..");

export const API_KEY = "e2e-api-key";
export const GRACE_MS = 1500;
export const JWT_SECRET = "e2e-jwt-secret-0123456789abcdef";

/**
 * Starts `presenced serve` on 127.0.0.1 (a free port) with a temp data dir.
 * `kill(signal)` ends the process; `restart()` starts it again on the same
 * port and data dir (a crash, a deploy).
 */
export async function startServer({ grace = GRACE_MS, heartbeat, devTokens = true } = {}) {
  const bin = process.env.PRESENCED_BIN ?? join(repo, "target/debug/presenced");
  const dataDir = mkdtempSync(join(tmpdir(), "presenced-e2e-"));
  const args = (listen) => {
    const list = [
      "serve",
      "--listen", listen,
      "--data-dir", dataDir,
      "--jwt-secret", JWT_SECRET,
      "--api-key", API_KEY,
      "--grace-ms", String(grace),
    ];
    if (heartbeat) list.push("--heartbeat-ms", String(heartbeat));
    if (devTokens) list.push("--dev-tokens");
    return list;
  };
  let output = "";
  let child = null;
  const spawnServer = (listen) =>
    new Promise((resolvePromise, reject) => {
      const proc = spawn(bin, args(listen), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
      child = proc;
      const mark = output.length;
      const timer = setTimeout(() => reject(new Error(`presenced did not start:\n${output}`)), 15000);
      proc.stdout.setEncoding("utf8").on("data", (chunk) => {
        output += chunk;
        const m = /listening on (http:\/\/\S+)/.exec(output.slice(mark));
        if (m) {
          clearTimeout(timer);
          resolvePromise(m[1]);
        }
      });
      proc.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk));
      proc.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      proc.on("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`presenced exited with ${code ?? signal}:\n${output}`));
      });
    });
  const base = await spawnServer("127.0.0.1:0");
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const kill = async (signal) => {
    if (exited()) return;
    const done = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (!exited()) {
      child.kill("SIGKILL");
      await done;
    }
  };
  return {
    base,
    grace,
    dataDir,
    get output() {
      return output;
    },
    /** The HTTP API with the key: parsed JSON and status. */
    async api(path, options = {}) {
      const res = await fetch(base + path, {
        ...options,
        headers: { Authorization: `Bearer ${API_KEY}`, "content-type": "application/json", ...options.headers },
      });
      return { status: res.status, body: await res.json() };
    },
    /** Ends the server with `signal` (SIGTERM: a clean shutdown; SIGKILL: a crash) and waits for it. */
    kill,
    /** Starts the server again on the same address and data dir; resolves once it listens. */
    async restart() {
      assert.ok(exited(), "restart() after kill()");
      const again = await spawnServer(new URL(base).host);
      assert.equal(again, base, "the restarted server listens where the first one did");
    },
    async stop() {
      await kill("SIGTERM");
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy on 127.0.0.1 in front of the server, to take a page's network
 * away for real (Chromium's emulated offline keeps an open WebSocket open):
 *
 * - `pause()`: the connections open now stop forwarding, in both directions,
 *   but stay open (their bytes wait in the kernel's buffers), like a path that
 *   died under a connection (a Wi-Fi switch, a NAT that forgot it); new
 *   connections go through.
 * - `cut()`: every connection is destroyed at once and new ones are refused
 *   until `restore()` (the network is down).
 * - `restore()`: paused connections forward again; new ones are accepted.
 *
 * An outage ends by itself after `maxOutageMs`, so that a failing test cannot
 * leave it on. `accepted` and `refused` count the connections.
 */
export async function startProxy(targetBase, { maxOutageMs = 30000 } = {}) {
  const target = new URL(targetBase);
  const pairs = new Set();
  let down = false;
  let outageTimer = null;
  const counts = { accepted: 0, refused: 0 };
  const destroy = (pair) => {
    pair.client.destroy();
    pair.upstream.destroy();
    pairs.delete(pair);
  };
  const server = createServer((client) => {
    if (down) {
      counts.refused += 1;
      client.destroy();
      return;
    }
    counts.accepted += 1;
    const upstream = connect(Number(target.port), target.hostname);
    const pair = { client, upstream, paused: false };
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    for (const s of [client, upstream]) {
      s.on("error", () => {});
      // A paused connection reads nothing, so it sees no end either.
      s.on("close", () => destroy(pair));
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const outage = () => {
    clearTimeout(outageTimer);
    outageTimer = setTimeout(() => proxy.restore(), maxOutageMs);
    outageTimer.unref();
  };
  const proxy = {
    base: `http://127.0.0.1:${server.address().port}`,
    counts,
    /** Connections open through the proxy now. */
    get open() {
      return pairs.size;
    },
    pause() {
      for (const pair of pairs) {
        pair.paused = true;
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
        pair.client.pause();
        pair.upstream.pause();
      }
      outage();
    },
    cut() {
      down = true;
      for (const pair of [...pairs]) destroy(pair);
      outage();
    },
    restore() {
      clearTimeout(outageTimer);
      down = false;
      for (const pair of pairs) {
        if (!pair.paused) continue;
        pair.paused = false;
        pair.client.pipe(pair.upstream);
        pair.upstream.pipe(pair.client);
      }
    },
    close() {
      clearTimeout(outageTimer);
      for (const pair of [...pairs]) destroy(pair);
      return new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

/** Headless Debian Chromium with the flags this machine needs. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A page in a context of its own (own sessionStorage, own network state), or
 * another tab of `context` (same origin storage, BroadcastChannel and Web
 * Locks), with console errors collected.
 */
export async function newPage(browser, { width = 1280, height = 820, context } = {}) {
  context ??= await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(String(error)));
  page.on("console", (msg) => {
    // Chromium logs failed WebSocket connects itself (offline tests expect them).
    if (msg.type() === "error" && !/^WebSocket connection to .* failed/.test(msg.text())) page.errors.push(msg.text());
  });
  return page;
}

/** Opens the demo (`query` e.g. "?share=1") and signs in as `name`; resolves once connected and in the room. */
export async function signIn(page, server, name, { room, base = server.base, query = "" } = {}) {
  await page.goto(base + "/" + query + (room ? `#${room}` : ""));
  await page.fill("#name", name);
  await page.click("#join");
  await waitConnected(page);
  const user = await page.evaluate(() => window.__demo.user);
  await page.waitForSelector(`#members li[data-user="${user}"]`);
  return user;
}

export async function waitConnected(page, timeout = 15000) {
  await page.waitForFunction(() => window.__demo?.state === "connected", null, { timeout });
}

/** Waits until `user` is (or is not) a member of the page's current room, in the SDK and in the list. */
export async function waitMember(page, user, present = true, timeout = 15000) {
  await page.waitForFunction(
    ([u, want]) => {
      const inSdk = window.__demo.members().includes(u);
      const inUi = document.querySelector(`#members li[data-user="${u}"]`) !== null;
      return inSdk === want && inUi === want;
    },
    [user, present],
    { timeout, polling: 20 },
  );
}

/** Waits until the People list shows `user` with `status`. */
export async function waitStatus(page, user, status, timeout = 15000) {
  await page.waitForSelector(`#people li[data-user="${user}"][data-status="${status}"]`, { timeout });
}

/**
 * Records the page's WebSockets to the server from now on, as the wire has
 * them: `sockets[i].frames` are `{at, dir: "in" | "out", frame}` (parsed),
 * `sockets[i].closed` once the socket closed. `frames(t, dir)` lists every
 * socket's frames of type `t`.
 */
export function recordSockets(page) {
  const sockets = [];
  page.on("websocket", (ws) => {
    if (new URL(ws.url()).pathname !== "/v1/ws") return;
    const socket = { ws, openedAt: Date.now(), frames: [], closed: false };
    sockets.push(socket);
    const add = (dir) => ({ payload }) => {
      let frame;
      try {
        frame = JSON.parse(String(payload));
      } catch {
        return;
      }
      socket.frames.push({ at: Date.now(), dir, frame });
    };
    ws.on("framereceived", add("in"));
    ws.on("framesent", add("out"));
    ws.on("close", () => (socket.closed = true));
  });
  return {
    sockets,
    /** Frames of every socket, oldest first, optionally only type `t` and direction `dir`, received after `since` (ms). */
    frames({ t, dir, since = 0 } = {}) {
      return sockets
        .flatMap((s) => s.frames)
        .filter((f) => f.at >= since && (t === undefined || f.frame.t === t) && (dir === undefined || f.dir === dir))
        .sort((x, y) => x.at - y.at);
    },
  };
}

/** An HS256 JWT for `user` signed with the test servers' secret, living `ttl` seconds from now. */
export function signToken(user, { ttl, name, iat = Math.floor(Date.now() / 1000) } = {}) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const claims = { sub: user, iat, exp: iat + ttl, ...(name ? { info: { name } } : {}) };
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", JWT_SECRET).update(body).digest("base64url")}`;
}

/**
 * Makes the demo's token endpoint (`POST /v1/dev/token`) of every page of
 * `context` answer with tokens living `ttl` seconds, minted here, and counts
 * the calls (`calls`: their times).
 */
export async function shortTokens(context, ttl) {
  const calls = [];
  await context.route("**/v1/dev/token", async (route) => {
    calls.push(Date.now());
    const { user, name } = JSON.parse(route.request().postData() ?? "{}");
    await route.fulfill({
      status: 200,
      contentType: "application/json",
      body: JSON.stringify({ token: signToken(user, { ttl, name }), expires_in: ttl }),
    });
  });
  return { calls };
}

/**
 * Reads the server's live event feed (`GET /v1/events`) from here:
 * `events` are the `presence` events so far; `close()` stops.
 */
export async function eventFeed(server) {
  const abort = new AbortController();
  const feed = { events: [], ready: false, close: () => abort.abort() };
  const res = await fetch(server.base + "/v1/events", { headers: { Authorization: `Bearer ${API_KEY}` }, signal: abort.signal });
  assert.equal(res.status, 200);
  (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const name = /^event: ?(.*)$/m.exec(block)?.[1] ?? "message";
          const data = [...block.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join("\n");
          if (name === "ready") feed.ready = true;
          if (name === "presence" && data) feed.events.push(JSON.parse(data));
        }
      }
    } catch {
      // Aborted, or the server went away.
    }
  })();
  await until(() => feed.ready, "the event feed to be ready", 5000);
  return feed;
}

/** Polls `check` (every 50 ms) until it is true; throws after `timeout` ms. */
export async function until(check, what, timeout = 10000) {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function events(page) {
  return page.evaluate(() => window.__events);
}

/** Where screenshots go: docs/screenshots with UPDATE_SCREENSHOTS=1, else e2e/artifacts. */
export function screenshotPath(name) {
  const dir = process.env.UPDATE_SCREENSHOTS === "1" ? join(repo, "docs/screenshots") : join(here, "artifacts");
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `body` with a fresh server and browser, and always cleans up; every
 * page the body opens (pushed to `pages`) must end without console errors. */
export async function withSetup(options, body) {
  const server = await startServer(options);
  const browser = await launchBrowser();
  const pages = [];
  try {
    await body({ server, browser, pages });
    for (const page of pages) assert.deepEqual(page.errors, [], "no errors in the page's console");
  } finally {
    await browser.close();
    await server.stop();
  }
}
