#!/usr/bin/env bash
# The reference web app (clients/web): installs Debian's chromium (and openssl, which makes the
# TLS test's certificates) if missing, installs the TypeScript client and the app from their
# package-lock.json files, type-checks and builds both,
# and runs the browser tests (headless Chromium through playwright-core) against a real
# `assistd dev` that the tests start on free loopback ports. Stops everything it started.
# Usage: web.sh ASSISTD_BIN
set -euo pipefail

bin=$(realpath "${1:?usage: web.sh ASSISTD_BIN}")
root=$(cd "$(dirname "$0")/.." && pwd)
web=$root/clients/web
tests_pid=
cleanup() {
  if [ -n "$tests_pid" ] && kill -0 "$tests_pid" 2>/dev/null; then
    kill -- "-$tests_pid" 2>/dev/null || true
    wait "$tests_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
step() { printf '\n--- web app: %s ---\n' "$*"; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "Node 20 or later is needed, found $(node --version)" >&2; exit 1; }

step "chromium"
chromium_bin=${CHROMIUM_BIN:-/usr/bin/chromium}
if [ ! -x "$chromium_bin" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
"$chromium_bin" --version 2> /dev/null  # Debian's launcher script complains on stderr about its memory check

step "openssl (test certificates for the HTTP/2 over TLS test)"
if ! command -v openssl > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl > /dev/null
fi
openssl version

step "npm ci (clients/ts, clients/web)"
npm ci --prefix "$root/clients/ts" --no-audit --no-fund --loglevel=error
npm ci --prefix "$web" --no-audit --no-fund --loglevel=error

step "build (tsc --strict, esbuild)"
(cd "$root/clients/ts" && npm run --silent build)
(cd "$web" && npm run --silent build)

step "browser tests against assistd dev"
# In a session of their own, so that whatever they start goes down with them.
(cd "$web" && SERVER_BIN=$bin CHROMIUM_BIN=$chromium_bin exec setsid timeout -k 10 600 \
  node --test --test-concurrency=1 --test-timeout=180000 dist-test/web.test.js) &
tests_pid=$!
wait "$tests_pid"
tests_pid=
echo "web app passed (screenshots in clients/web/test-artifacts)"
