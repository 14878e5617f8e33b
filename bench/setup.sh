#!/usr/bin/env bash
# Installs the peer servers presenced-bench measures against, into
# bench/node_modules (idempotent: npm install from the lock file, skipped when
# already installed).
#
#   bench/setup.sh            soketi 1.6.1 and Socket.IO 4.8 (npm)
#   bench/setup.sh --sockudo  also `cargo install sockudo` into bench/.sockudo
#                             (needs Debian's cmake and protobuf-compiler;
#                             11 to 30 minutes on 2 cores)
#
# soketi's uWebSockets.js dependency is not served by the npm registry; the
# "overrides" entry in package.json points it at a registry build
# (@trufflesuite/uws-js-unofficial).
set -euo pipefail
cd "$(dirname "$0")"

want_sockudo=0
for a in "$@"; do
  case "$a" in
    --sockudo) want_sockudo=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

command -v node >/dev/null || { echo "node is required (Debian: apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required (Debian: apt-get install npm)" >&2; exit 1; }

stamp=node_modules/.presenced-bench-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp" \
   && [ -f node_modules/@soketi/soketi/bin/server.js ] && [ -f node_modules/socket.io/package.json ]; then
  echo "peers already installed (bench/node_modules)"
else
  # `npm install` rather than `npm ci`: npm ci rejects this lock file over
  # optional platform packages of msgpackr-extract that it records lazily.
  npm install --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

if [ "$want_sockudo" = 1 ]; then
  if [ -x .sockudo/bin/sockudo ]; then
    echo "sockudo already installed (bench/.sockudo/bin/sockudo)"
  else
    if ! command -v cmake >/dev/null || ! command -v protoc >/dev/null; then
      echo "installing cmake and protobuf-compiler (Debian)"
      apt-get update -qq && apt-get install -y -qq cmake protobuf-compiler
    fi
    cargo install --locked --root .sockudo sockudo
  fi
fi
