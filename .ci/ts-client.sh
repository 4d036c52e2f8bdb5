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
tests_pid=
cleanup() {
  if [ -n "$tests_pid" ] && kill -0 "$tests_pid" 2>/dev/null; then
    kill -- "-$tests_pid" 2>/dev/null || true
    wait "$tests_pid" 2>/dev/null || true
  fi
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
# In a session of their own, so that whatever they start goes down with them.
(cd "$ts" && SERVER_BIN=$bin exec setsid timeout -k 10 300 \
  node --test --test-concurrency=1 --test-timeout=120000 dist/test/client.test.js) &
tests_pid=$!
wait "$tests_pid"
tests_pid=

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
