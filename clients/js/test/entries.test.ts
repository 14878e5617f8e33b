import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createClient } from "../src/index.js";
import { shareAcrossTabs } from "../src/share/index.js";
import { FakeWebSocket } from "./helpers.js";
import { FakeBrowser, settle } from "./tabs.js";

const src = resolve(dirname(fileURLToPath(import.meta.url)), "../src");

/** Every module of src/ an entry imports, directly or not (type-only imports included), relative to src/. */
function modulesOf(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    const name = relative(src, file);
    if (seen.has(name)) return;
    seen.add(name);
    const code = readFileSync(file, "utf8");
    for (const [, specifier] of code.matchAll(/\bfrom\s+"(\.{1,2}\/[^"]+)"/g)) {
      visit(join(dirname(file), specifier!.replace(/\.js$/, ".ts")));
    }
  };
  visit(join(src, entry));
  return seen;
}

describe("entries", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.advanceTimersByTime(10_000);
    vi.useRealTimers();
  });

  it("the main entry and the React bindings import nothing of the sharing module", () => {
    for (const entry of ["index.ts", "react.ts"]) {
      const modules = [...modulesOf(entry)];
      expect(modules).toContain("connection.ts");
      expect(modules.filter((name) => name.startsWith("share/"))).toEqual([]);
    }
    // The walk does find the sharing module where it is imported.
    expect([...modulesOf("share/index.ts")]).toEqual(expect.arrayContaining(["share/tab-leader.ts", "connection.ts"]));
  });

  it("shareAcrossTabs: true throws a TypeError saying what to import", () => {
    const url = "ws://entries.test/v1/ws";
    const options = { url, token: "t", WebSocket: FakeWebSocket, storage: null, window: null, document: null };
    const make = () => createClient({ ...options, shareAcrossTabs: true as never });
    expect(make).toThrow(TypeError);
    expect(make).toThrow('import { shareAcrossTabs } from "@presenced/client/share"');
    expect(() => createClient({ ...options, shareAcrossTabs: "yes" as never })).toThrow(TypeError);
    // Also when the URL already has a connection, and without opening a socket of its own.
    const client = createClient(options);
    expect(make).toThrow(TypeError);
    client.release();
  });

  it("false and null mean a connection of the page's own", async () => {
    for (const shareAcrossTabs of [false, null] as const) {
      const browser = new FakeBrowser({ shareAcrossTabs });
      const client = browser.tab().client();
      await settle();
      expect(browser.sockets).toHaveLength(1);
      expect(browser.posted).toEqual([]);
      client.release();
    }
  });

  it("the share entry's export turns sharing on", async () => {
    const browser = new FakeBrowser({ shareAcrossTabs });
    const a = browser.tab().client();
    await settle();
    const b = browser.tab().client();
    await settle();
    expect(browser.sockets).toHaveLength(1);
    expect(browser.posted.length).toBeGreaterThan(0);
    a.release();
    b.release();
  });
});
