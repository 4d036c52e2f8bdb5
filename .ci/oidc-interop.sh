#!/usr/bin/env bash
# Interoperability: the full redirect sign-in through a real `assistd serve` against the
# OpenID-certified npm `oidc-provider` on 127.0.0.1 with PKCE required: BeginLogin → authorize
# (no browser) → CompleteLogin → GetCurrentUser → Refresh. Usage: oidc-interop.sh ASSISTD_BIN
set -euo pipefail

bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
addr=127.0.0.1:$(free_port)
redirect=http://127.0.0.1:8080/auth/callback

provider_pid=
server_pid=
cleanup() {
  for pid in $server_pid $provider_pid; do
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "oidc interop FAILED: $*" >&2
  echo "--- provider log ---" >&2; cat "$work/provider.log" >&2 || true
  echo "--- server log ---" >&2; cat "$work/server.log" >&2 || true
  exit 1
}

npm ci --prefix "$here/oidc-interop" --no-audit --no-fund --loglevel=error

export OIDC_CLIENT_ID=assistd-interop OIDC_CLIENT_SECRET=interop-secret-$$ OIDC_REDIRECT_URI=$redirect
OIDC_PORT=0 node "$here/oidc-interop/provider.mjs" > "$work/provider.out" 2> "$work/provider.log" &
provider_pid=$!
issuer=
for _ in $(seq 1 100); do
  issuer=$(sed -n 's/^OIDC_ISSUER=//p' "$work/provider.out")
  [ -n "$issuer" ] && break
  sleep 0.1
done
[ -n "$issuer" ] || fail "the provider did not start"

export ASSISTD_DATA_DIR=$work/data ASSISTD_SERVER__LISTEN=$addr ASSISTD_LOG__FORMAT=json \
  ASSISTD_SIGN_IN__ISSUER=$issuer ASSISTD_SIGN_IN__CLIENT_ID=$OIDC_CLIENT_ID \
  ASSISTD_SIGN_IN__CLIENT_SECRET=$OIDC_CLIENT_SECRET \
  ASSISTD_SIGN_IN__ALLOWED_REDIRECT_URIS="[\"$redirect\"]"
unset DATABASE_URL
"$bin" serve > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext "$addr" grpc.health.v1.Health/Check > /dev/null 2>&1 && break
  sleep 0.1
done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
begun=$(grpcurl -plaintext -d "{\"redirect_uri\": \"$redirect\", \"request_gmail_access\": true}" \
  "$addr" assistd.auth.v1.AuthService/BeginLogin) || fail "BeginLogin: $begun"
url=$(json "['authorizationUrl']" <<<"$begun")
state=$(json "['state']" <<<"$begun")
grep -q "code_challenge_method=S256" <<<"$url" || fail "no S256 challenge in $url"

final=$(node "$here/oidc-interop/authorize.mjs" "$url") || fail "authorize"
query=${final#*\?}
code=$(python3 -c "import sys,urllib.parse as u; q=u.parse_qs(sys.argv[1]); print(q['code'][0])" "$query") \
  || fail "no code in $final"
returned_state=$(python3 -c "import sys,urllib.parse as u; q=u.parse_qs(sys.argv[1]); print(q['state'][0])" "$query")
[ "$returned_state" = "$state" ] || fail "state changed on the way"

done_login=$(grpcurl -plaintext -d "{\"state\": \"$state\", \"code\": \"$code\", \"device_name\": \"interop\"}" \
  "$addr" assistd.auth.v1.AuthService/CompleteLogin) || fail "CompleteLogin: $done_login"
access=$(json "['tokens']['accessToken']" <<<"$done_login")
refresh=$(json "['tokens']['refreshToken']" <<<"$done_login")
[ "$(json "['user']['email']" <<<"$done_login")" = "grace@example.org" ] || fail "wrong user: $done_login"

me=$(grpcurl -plaintext -H "authorization: Bearer $access" "$addr" assistd.auth.v1.AuthService/GetCurrentUser) \
  || fail "GetCurrentUser: $me"
grep -q '"displayName": "Grace Hopper"' <<<"$me" || fail "profile: $me"

refreshed=$(grpcurl -plaintext -d "{\"refresh_token\": \"$refresh\"}" "$addr" assistd.auth.v1.AuthService/Refresh) \
  || fail "Refresh: $refreshed"
[ "$(json "['tokens']['refreshToken']" <<<"$refreshed")" != "$refresh" ] || fail "the refresh token did not rotate"

# The same state cannot finish a second login.
if again=$(grpcurl -plaintext -d "{\"state\": \"$state\", \"code\": \"$code\"}" \
    "$addr" assistd.auth.v1.AuthService/CompleteLogin 2>&1); then
  fail "a used state was accepted"
fi
grep -q "Unauthenticated" <<<"$again" && grep -q "login state is unknown, expired or already used" <<<"$again" \
  || fail "expected an invalid login state: $again"
for secret in "$refresh" "$OIDC_CLIENT_SECRET" "$code"; do
  if grep -qF "$secret" "$work/server.log"; then fail "a secret appeared in the server log"; fi
done
echo "oidc-provider interop passed ($issuer)"
