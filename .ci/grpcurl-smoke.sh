#!/usr/bin/env bash
# Starts a real `assistd serve` and drives it with grpcurl through server reflection:
# list, describe, and calls with a bearer token. Usage: grpcurl-smoke.sh ASSISTD_BIN [DATABASE_URL]
set -euo pipefail

bin=$1
database_url=${2:-}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
export ASSISTD_DATA_DIR=$work/data ASSISTD_SERVER__LISTEN=$addr ASSISTD_LOG__FORMAT=json
if [ -n "$database_url" ]; then export DATABASE_URL=$database_url; else unset DATABASE_URL; fi

server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill "$server_pid"; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "grpcurl smoke FAILED: $*" >&2; echo "--- server log ---" >&2; cat "$work/server.log" >&2 || true; exit 1; }

user=$("$bin" admin create-user --display-name "Smoke Test")
token=$("$bin" admin issue-token --user-id "$user")

"$bin" serve > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grpcurl -plaintext "$addr" grpc.health.v1.Health/Check > /dev/null 2>&1 && break
  sleep 0.1
done

services=$(grpcurl -plaintext "$addr" list) || fail "list"
echo "$services"
for service in assistd.auth.v1.AuthService assistd.apikey.v1.UserApiKeyService assistd.chat.v1.ChatService \
               assistd.gmail.v1.GmailService assistd.preferences.v1.PreferencesService \
               grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection; do
  grep -qx "$service" <<<"$services" || fail "$service not listed"
done

described=$(grpcurl -plaintext "$addr" describe assistd.preferences.v1.PreferencesService) || fail "describe"
echo "$described" | head -20
grep -q "WatchPreferences streams the user's current preferences" <<<"$described" || fail "describe lacks the RPC comments"
grpcurl -plaintext "$addr" describe assistd.preferences.v1.Preferences | grep -q "IANA timezone name" \
  || fail "describe lacks the field comments"

health=$(grpcurl -plaintext -d '{"service": "assistd.preferences.v1.PreferencesService"}' "$addr" grpc.health.v1.Health/Check)
grep -q SERVING <<<"$health" || fail "health: $health"

got=$(grpcurl -plaintext -H "authorization: Bearer $token" "$addr" assistd.preferences.v1.PreferencesService/GetPreferences) \
  || fail "GetPreferences"
echo "$got"
grep -q '"timezone": "UTC"' <<<"$got" || fail "defaults expected: $got"

updated=$(grpcurl -plaintext -H "authorization: Bearer $token" \
  -d '{"preferences": {"timezone": "Europe/Berlin", "theme": "THEME_DARK"}, "update_mask": {"paths": ["timezone", "theme"]}}' \
  "$addr" assistd.preferences.v1.PreferencesService/UpdatePreferences) || fail "UpdatePreferences"
grep -q '"timezone": "Europe/Berlin"' <<<"$updated" || fail "update not applied: $updated"

if bad=$(grpcurl -plaintext -H "authorization: Bearer $token" \
  -d '{"preferences": {"timezone": "Mars/Olympus"}, "update_mask": {"paths": ["timezone"]}}' \
  "$addr" assistd.preferences.v1.PreferencesService/UpdatePreferences 2>&1); then
  fail "an unknown timezone was accepted"
fi
grep -q "InvalidArgument" <<<"$bad" || fail "expected InvalidArgument: $bad"

if anon=$(grpcurl -plaintext "$addr" assistd.preferences.v1.PreferencesService/GetPreferences 2>&1); then
  fail "a call without a token was accepted"
fi
grep -q "Unauthenticated" <<<"$anon" || fail "expected Unauthenticated: $anon"

created=$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"title": "Smoke test"}' \
  "$addr" assistd.chat.v1.ChatService/CreateSession) || fail "CreateSession"
grep -q '"title": "Smoke test"' <<<"$created" || fail "session not created: $created"
listed=$(grpcurl -plaintext -H "authorization: Bearer $token" "$addr" assistd.chat.v1.ChatService/ListSessions) \
  || fail "ListSessions"
grep -q '"title": "Smoke test"' <<<"$listed" || fail "session not listed: $listed"
if nokey=$(grpcurl -plaintext -H "authorization: Bearer $token" \
  -d "{\"session_id\": \"$(sed -n 's/.*"id": "\([^"]*\)".*/\1/p' <<<"$created" | head -1)\", \"client_message_id\": \"smoke-1\", \"text\": \"hi\"}" \
  "$addr" assistd.chat.v1.ChatService/SendMessage 2>&1); then
  fail "a send without an API key was accepted"
fi
grep -q "FailedPrecondition" <<<"$nokey" || fail "expected FailedPrecondition: $nokey"

gmail=$(grpcurl -plaintext -H "authorization: Bearer $token" "$addr" assistd.gmail.v1.GmailService/GetConnection 2>&1) \
  || fail "GetConnection failed: $gmail"
grep -q "GMAIL_CONNECTION_STATE_NOT_CONNECTED" <<<"$gmail" || fail "expected a Gmail link that is not connected: $gmail"

# A user without Gmail (and without a Gemini key) has no thread to summarise.
if summary=$(grpcurl -plaintext -H "authorization: Bearer $token" -d '{"thread_id":"18f3c2a1b4d5e6f7"}' \
  "$addr" assistd.gmail.v1.GmailService/SummarizeThread 2>&1); then
  fail "SummarizeThread of an unknown thread answered OK"
fi
grep -q "NotFound" <<<"$summary" || fail "expected NotFound: $summary"

# SIGTERM: the server drains and exits 0.
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not exit cleanly on SIGTERM"
server_pid=
grep -q '"message":"assistd stopped"' "$work/server.log" || fail "no clean stop in the log"
grep -q '"grpc_code":"Unauthenticated"' "$work/server.log" || fail "request tracing did not log the status code"
if grep -q "$token" "$work/server.log"; then fail "the access token appeared in the server log"; fi
if [ -n "$database_url" ]; then echo "grpcurl smoke passed (PostgreSQL)"; else echo "grpcurl smoke passed (SQLite)"; fi
