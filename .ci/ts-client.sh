#!/usr/bin/env bash
# The TypeScript client (clients/ts, @assistd/client): installs from package-lock.json, checks
# that the committed generated code is what `buf generate` makes from proto/, type-checks, runs
# its tests against a real `assistd dev` (its embedded OpenID provider and local model), reports the
# size of a browser bundle, and runs `buf breaking` against the contracts this branch started
# from. Stops everything it started. Usage: ts-client.sh ASSISTD_BIN
set -euo pipefail

bin=$(realpath "${1:?usage: ts-client.sh ASSISTD_BIN}")
root=$(cd "$(dirname "$0")/.." && pwd)
ts=$root/clients/ts
work=$(mktemp -d)
# The tests run in a process group of their own (setsid: its id is the test runner's pid), so
# that whatever they start — assistd dev, relays — goes down with it, whether they pass or fail.
tests_pgid=
stop_tests() {
  [ -n "$tests_pgid" ] || return 0
  kill -TERM -- "-$tests_pgid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 -- "-$tests_pgid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 -- "-$tests_pgid" 2>/dev/null; then
    echo "processes of the tests outlived SIGTERM by 10 s; killing them" >&2
    kill -KILL -- "-$tests_pgid" 2>/dev/null || true
  fi
  wait "$tests_pgid" 2>/dev/null || true
  tests_pgid=
}
cleanup() {
  stop_tests
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n--- ts client: %s ---\n' "$*"; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "Node 20 or later is needed, found $(node --version)" >&2; exit 1; }

step "npm ci"
npm ci --prefix "$ts" --no-audit --no-fund --loglevel=error

step "generated code is up to date (buf generate, then git diff)"
(cd "$ts" && npx buf generate)
if ! git -C "$root" diff --exit-code --stat -- clients/ts/gen \
  || [ -n "$(git -C "$root" status --porcelain --untracked-files=all -- clients/ts/gen)" ]; then
  git -C "$root" status --short -- clients/ts/gen >&2
  echo "clients/ts/gen differs from what buf generate makes: run 'npm run generate' in clients/ts and commit" >&2
  exit 1
fi

step "type-check (tsc --strict)"
(cd "$ts" && rm -rf dist && npx tsc -p tsconfig.json)

step "tests against assistd dev"
# The server and the relays the tests need bind port 0 and report the port they got, so no port
# is chosen here and released before use.
(cd "$ts" && SERVER_BIN=$bin exec setsid timeout -k 10 300 \
  node --test --test-concurrency=1 --test-timeout=120000 dist/test/client.test.js) &
tests_pgid=$!
tests_status=0
wait "$tests_pgid" || tests_status=$?
# On success too: a server a passing test failed to stop must not outlive the step.
stop_tests
[ "$tests_status" -eq 0 ] || { echo "the client's tests failed (exit $tests_status)" >&2; exit "$tests_status"; }

step "bundle size (chat + preferences clients, minified, gzip)"
(cd "$ts" && npx esbuild size/chat-and-preferences.ts --bundle --minify --format=esm \
  --platform=browser --log-level=warning --outfile="$work/bundle.js")
printf 'minified %s bytes, gzip %s bytes\n' "$(wc -c < "$work/bundle.js")" "$(gzip -9 -c "$work/bundle.js" | wc -c)"

step "buf breaking against the contracts this branch started from"
base=${BUF_BREAKING_AGAINST:-}
if [ -z "$base" ]; then
  for ref in origin/main main; do
    if git -C "$root" rev-parse -q --verify "$ref^{commit}" > /dev/null; then
      base=$(git -C "$root" merge-base HEAD "$ref")
      break
    fi
  done
  # On main itself (or without a main) compare with the previous commit.
  if [ -z "$base" ] || [ "$base" = "$(git -C "$root" rev-parse HEAD)" ]; then
    base=$(git -C "$root" rev-parse -q --verify 'HEAD~1^{commit}' || true)
  fi
fi
if [ -z "$base" ]; then
  echo "no earlier commit to compare the contracts with (a shallow clone? fetch the history)" >&2
  exit 1
fi
mkdir -p "$work/against"
git -C "$root" archive "$base" buf.yaml proto | tar -x -C "$work/against"
echo "against $(git -C "$root" log -1 --format='%h %s' "$base")"
(cd "$root" && npx --prefix "$ts" buf breaking . --against "$work/against")
echo "ts client passed"
