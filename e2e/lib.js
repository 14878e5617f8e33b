// Helpers of the end-to-end tests: a real presenced server per test (temp
// data dir, dev tokens, short grace) and headless Chromium through
// playwright-core (Debian's chromium; nothing is downloaded).
import { spawn } from "node:child_process";
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

/** Starts `presenced serve` on 127.0.0.1 (a free port) with a temp data dir. */
export async function startServer({ grace = GRACE_MS, heartbeat, devTokens = true } = {}) {
  const bin = process.env.PRESENCED_BIN ?? join(repo, "target/debug/presenced");
  const dataDir = mkdtempSync(join(tmpdir(), "presenced-e2e-"));
  const args = [
    "serve",
    "--listen", "127.0.0.1:0",
    "--data-dir", dataDir,
    "--jwt-secret", "e2e-jwt-secret-0123456789abcdef",
    "--api-key", API_KEY,
    "--grace-ms", String(grace),
  ];
  if (heartbeat) args.push("--heartbeat-ms", String(heartbeat));
  if (devTokens) args.push("--dev-tokens");
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
  let output = "";
  const base = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`presenced did not start:\n${output}`)), 15000);
    const onData = (chunk) => {
      output += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolvePromise(m[1]);
      }
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk));
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`presenced exited with ${code}:\n${output}`));
    });
  });
  return {
    base,
    grace,
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
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP proxy in front of the server, to take a page's network away for
 * real: `cut()` silently drops every byte both ways (no FIN, no RST, like a
 * pulled cable) and refuses new connections; `restore()` ends the dead
 * connections and lets new ones through again.
 */
export async function startProxy(targetBase) {
  const target = new URL(targetBase);
  const pairs = new Set();
  let up = true;
  const server = createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    const pair = { client, upstream, dead: false };
    pairs.add(pair);
    const forward = (from, to) =>
      from.on("data", (chunk) => {
        if (!pair.dead) to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      if (pair.dead) return; // a cut connection stays silent until restore()
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, upstream]) {
      s.on("error", () => {});
      s.on("end", end);
      s.on("close", end);
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    cut() {
      up = false;
      for (const pair of pairs) pair.dead = true;
    },
    restore() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
      up = true;
    },
    close() {
      this.restore();
      return new Promise((r) => server.close(r));
    },
  };
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
