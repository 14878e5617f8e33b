// Bundles tiny apps that use the SDK with Vite (production build, minified)
// and prints the size of each bundle, minified and gzipped (level 9), as the
// table in README.md. The SDK comes from src/ under the package's entry names;
// React itself is left out (external), so the React rows count only the
// bindings. Usage: npm run size
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "vite";

const root = resolve(import.meta.dirname, "..");
const src = (file) => join(root, "src", file);
const alias = [
  { find: /^@presenced\/client\/react$/, replacement: src("react.ts") },
  { find: /^@presenced\/client\/share$/, replacement: src("share/index.ts") },
  { find: /^@presenced\/client$/, replacement: src("index.ts") },
];

const URL = `"wss://presence.example.com/v1/ws"`;
const apps = {
  "createClient": `
import { createClient } from "@presenced/client";
createClient({ url: ${URL}, token: null });
`,
  "createClient + shareAcrossTabs": `
import { createClient } from "@presenced/client";
import { shareAcrossTabs } from "@presenced/client/share";
createClient({ url: ${URL}, token: null, shareAcrossTabs });
`,
  "React bindings": `
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { PresenceProvider, useConnectionState } from "@presenced/client/react";
function State() { return useConnectionState(); }
createRoot(document.body).render(createElement(PresenceProvider, { url: ${URL}, token: null }, createElement(State)));
`,
  "React bindings + shareAcrossTabs": `
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { PresenceProvider, useConnectionState } from "@presenced/client/react";
import { shareAcrossTabs } from "@presenced/client/share";
function State() { return useConnectionState(); }
createRoot(document.body).render(
  createElement(PresenceProvider, { url: ${URL}, token: null, options: { shareAcrossTabs } }, createElement(State)),
);
`,
};

const dir = mkdtempSync(join(tmpdir(), "presenced-size-"));
const rows = [];
try {
  for (const [name, code] of Object.entries(apps)) {
    const entry = join(dir, `${rows.length}.js`);
    writeFileSync(entry, code);
    const output = await build({
      configFile: false,
      logLevel: "silent",
      root: dir,
      resolve: { alias },
      build: {
        write: false,
        minify: true,
        target: "es2020",
        modulePreload: false,
        rollupOptions: { input: entry, external: ["react", "react-dom/client"] },
      },
    });
    const chunks = (Array.isArray(output) ? output : [output]).flatMap((o) => o.output);
    const js = chunks.filter((c) => c.type === "chunk").map((c) => c.code).join("\n");
    rows.push({ name, raw: Buffer.byteLength(js), gzip: gzipSync(js, { level: 9 }).length });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const kb = (n) => `${(n / 1000).toFixed(1)} kB`;
console.log("| app | minified | gzip |\n| --- | ---: | ---: |");
for (const { name, raw, gzip } of rows) console.log(`| ${name} | ${kb(raw)} | ${kb(gzip)} |`);
