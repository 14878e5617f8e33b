// Copies the TypeScript examples of the READMEs (every ```ts and ```tsx
// block of clients/js/README.md and of the repository's README.md) into the
// consumer fixture, one module each, so that the fixture's strict type check
// covers them. Names the examples leave to the reader (a `render` function, a
// token provider) are declared in test/consumer/src/readme-globals.d.ts.
// Usage: node scripts/readme-examples.mjs (run by scripts/consumer-test.sh)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const out = join(root, "test", "consumer", "src", "readme");
const readmes = { sdk: join(root, "README.md"), repo: join(root, "..", "..", "README.md") };

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
let count = 0;
for (const [name, file] of Object.entries(readmes)) {
  const text = readFileSync(file, "utf8");
  const blocks = [...text.matchAll(/^```(tsx?)\n([\s\S]*?)^```$/gm)];
  blocks.forEach(([, lang, code], i) => {
    const line = text.slice(0, text.indexOf(code)).split("\n").length;
    const module = /^\s*(import|export)\s/m.test(code) ? "" : "export {};\n";
    const header = `// From ${name === "sdk" ? "clients/js/README.md" : "README.md"}, line ${line}. Generated: edit the README.\n`;
    writeFileSync(join(out, `${name}-${i + 1}.${lang}`), header + module + code);
    count += 1;
  });
}
if (count === 0) throw new Error("no TypeScript examples found in the READMEs");
console.log(`readme examples: ${count} copied to ${out}`);
