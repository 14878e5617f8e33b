// Builds dist/: the ES modules with their declarations (dist/*.js, for
// `import`) and a CommonJS copy (dist/cjs/, for `require`), marked as
// CommonJS by a package.json of its own so that Node and TypeScript read its
// .js and .d.ts files as CommonJS. Usage: npm run build (also run by npm pack).
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
rmSync(join(root, "dist"), { recursive: true, force: true });
for (const project of ["tsconfig.build.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { stdio: "inherit" });
}
writeFileSync(join(root, "dist", "cjs", "package.json"), '{\n  "type": "commonjs"\n}\n');
