#!/usr/bin/env bash
# End-to-end tests of the demo (/) and the dashboard (/admin) in headless
# Chromium: Debian's chromium package driven by playwright-core (no browser
# download). Builds the server, installs what is missing, runs every test.
#
#   e2e/run.sh                          # all tests
#   UPDATE_SCREENSHOTS=1 e2e/run.sh     # also refresh docs/screenshots/*.png
#   PRESENCED_BIN=/path/to/presenced e2e/run.sh   # test another binary
#
# Screenshots go to e2e/artifacts/ unless UPDATE_SCREENSHOTS=1.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
"$CHROMIUM" --version

echo "== npm ci (e2e)"
npm ci --no-audit --no-fund

if [ -z "${PRESENCED_BIN:-}" ]; then
  echo "== cargo build -p presenced"
  (cd .. && cargo build -p presenced)
  target=$(cd .. && cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
  export PRESENCED_BIN="$target/debug/presenced"
fi
echo "== server: $PRESENCED_BIN"

echo "== tests"
node --test --test-concurrency=1 --test-timeout=180000 tests/*.test.js
