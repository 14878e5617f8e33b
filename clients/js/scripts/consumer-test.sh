#!/usr/bin/env sh
# Installs the package as an application does and checks that it works:
# `npm pack` (which builds dist/ through `prepack`), then the tarball
# installed into the fixture app in test/consumer (Vite + React + TypeScript
# strict, dependencies from its committed lockfile), whose sources are
# type-checked and bundled, with the READMEs' TypeScript examples copied in
# and type-checked too (scripts/readme-examples.mjs); plus require() and import
# of every entry in Node, and type checks with moduleResolution node16 (ES
# module and CommonJS) and node (the old resolution). Needs only the npm
# registry (or npm's cache). Usage: npm run consumer-test (in clients/js)
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund

pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT
echo "== npm pack"
npm pack --silent --pack-destination "$pack" >/dev/null
tarball=$(ls "$pack"/*.tgz)
tar -tzf "$tarball" | grep -q '^package/dist/index.js$' || { echo "the package has no dist/index.js" >&2; exit 1; }
tar -tzf "$tarball" | grep -q '^package/dist/cjs/index.js$' || { echo "the package has no dist/cjs/index.js" >&2; exit 1; }

node scripts/readme-examples.mjs
cd test/consumer
echo "== install into the fixture app"
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
npm install --no-save --no-audit --no-fund --prefer-offline --loglevel=error "$tarball"

echo "== type check: the app and the README examples (bundler resolution, strict)"
npx tsc -p tsconfig.json
echo "== type check: moduleResolution node16 (ES module and CommonJS)"
npx tsc -p tsconfig.node16.json
echo "== type check: moduleResolution node"
npx tsc -p tsconfig.node10.json
echo "== node: require() and import"
node checks/require.cjs
node checks/import.mjs
echo "== vite build"
npx vite build
echo "consumer test: ok"
