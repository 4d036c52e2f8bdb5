// @assistd/client against a real `assistd dev` (SQLite in a temp dir, its embedded OpenID
// provider for sign-in, its local model for chat). Access tokens live 1 s (`--access-token-ttl`)
// plus the server's 30 s of clock-skew leeway, so expiry and refresh are the server's own
// decisions, not simulated.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescEnum } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AuditAction,
  Code,
  ConnectError,
  LoginRedirectError,
  Reason,
  backoffDelay,
  beginRedirectLogin,
  completeRedirectLogin,
  createAssistdClient,
  describeError,
  errorReason,
  PreferencesSchema,
  SignInMethod,
  Theme,
  fieldViolations,
  memoryTokenStore,
  signInWithIdToken,
  watchPreferences,
} from "../src/index.js";
import * as entry from "../src/index.js";
import type { Interceptor } from "@connectrpc/connect";
import type { AssistdClient, Preferences, SessionEndedEvent, TokenStore, WatchState } from "../src/index.js";
import {
  DevServer,
  FaultyLink,
  authorize,
  devIdToken,
  memoryStateStore,
  newClient,
  newUser,
  redirectUri,
  readyToChat,
  removeDir,
  signIn,
  sleep,
  streamReply,
  tempDir,
} from "./harness.js";
import type { TestClient } from "./harness.js";

const LEEWAY_MS = 30_000; // the server's clock-skew leeway on access tokens

let work: string;
let server: DevServer;
// Signed in first so that its access token has expired by the time the expiry test runs.
let expiring: TestClient;
let expiringRefreshes = 0;
let expiringWatcher: TestClient;
let throughRefresh: TestClient;
let throughRefreshChat: string;
// Their clocks run behind the server's: they believe their tokens valid after the server stopped
// accepting them, so only the server's answer can tell them to refresh.
let behindChat: TestClient;
let behindChatSession: string;
let behindWatch: TestClient;
const CLOCK_BEHIND_MS = 10 * 60_000;

/**
 * A token store of a client whose clock is `ms` behind the server's. The client compares the
 * server's expiry time with its own clock; storing the expiry `ms` later is the same comparison.
 */
function clockBehindStore(ms: number): TokenStore {
  const inner = memoryTokenStore();
  return {
    get: () => inner.get(),
    set: (t) => inner.set({ ...t, accessTokenExpiresAt: t.accessTokenExpiresAt + ms }),
    clear: () => inner.clear(),
  };
}

before(async () => {
  work = tempDir();
  server = new DevServer(join(work, "data"), join(work, "server.log"), ["--access-token-ttl", "1s"]);
  await server.start();
  expiring = newClient(server, { onRefresh: () => (expiringRefreshes += 1) });
  await signIn(expiring, "expiry test");
  expiringWatcher = newClient(server);
  await signIn(expiringWatcher, "expiry watch test");
  throughRefresh = newClient(server);
  await signIn(throughRefresh, "through refresh test");
  throughRefreshChat = await readyToChat(throughRefresh);
  behindChat = newClient(server, { store: clockBehindStore(CLOCK_BEHIND_MS) });
  await signIn(behindChat, "slow clock chat");
  behindChatSession = await readyToChat(behindChat);
  behindWatch = newClient(server, { store: clockBehindStore(CLOCK_BEHIND_MS) });
  await signIn(behindWatch, "slow clock watch");
});

after(async () => {
  await server?.stop();
  if (process.env.KEEP_TEST_LOGS) console.error(`logs kept in ${work}`);
  else if (work) removeDir(work);
});

async function auditCount(client: AssistdClient, action: AuditAction, sinceMs: number): Promise<number> {
  let count = 0;
  let pageToken = "";
  do {
    const page = await client.apiKeys.listAuditEvents({
      actions: [action],
      startTime: timestampFromMs(sinceMs),
      pageSize: 100,
      pageToken,
    });
    count += page.events.length;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return count;
}

describe("package exports", () => {
  test("every generated enum is exported by name, with its values by name", () => {
    const aliases: Record<string, string> = { Provider: "ApiKeyProvider" };
    const namespaces = [entry.authV1, entry.apikeyV1, entry.chatV1, entry.preferencesV1, entry.gmailV1];
    const enums = namespaces.flatMap((ns) =>
      Object.values(ns).filter(
        (v): v is DescEnum =>
          typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "enum",
      ),
    );
    assert.ok(enums.length >= 13, `found ${enums.length} enums`);
    for (const desc of enums) {
      const name = aliases[desc.name] ?? desc.name;
      const exported = (entry as Record<string, unknown>)[name] as Record<string, number> | undefined;
      assert.ok(exported, `${desc.typeName} is exported as ${name}`);
      for (const value of desc.values) {
        assert.equal(exported[value.localName], value.number, `${name}.${value.localName}`);
      }
    }
    assert.equal(entry.Theme.DARK, entry.preferencesV1.Theme.DARK);
    assert.equal(entry.MessageRole[entry.MessageRole.USER], "USER");
  });
});

describe("sign-in", () => {
  test("the redirect path yields real tokens that the interceptor sends", async () => {
    const client = newClient(server);
    const user = newUser("grace");
    const done = await signIn(client, "laptop", user);
    assert.equal(done.user?.email, user.email);
    const tokens = await client.session.tokens();
    assert.ok(tokens && tokens.accessToken.split(".").length === 3, "a JWT access token is stored");
    assert.ok(tokens.accessTokenExpiresAt > Date.now() - 5_000);
    const me = await client.auth.getCurrentUser({});
    assert.equal(me.user?.displayName, user.name);
    const sessions = await client.auth.listSessions({});
    const current = sessions.sessions.find((s) => s.current);
    assert.equal(current?.id, tokens.sessionId);
    assert.equal(current?.deviceName, "laptop");
  });

  test("the default transport (connect-web over fetch) works too", async () => {
    const client = createAssistdClient({ baseUrl: server.baseUrl });
    const user = newUser("fetch");
    await signIn(client, "fetch", user);
    assert.equal((await client.auth.getCurrentUser({})).user?.email, user.email);
    const themes = await client.preferences.listThemes({});
    assert.deepEqual(
      themes.themes.map((t) => t.theme),
      [Theme.LIGHT, Theme.DARK, Theme.SYSTEM],
    );
  });

  test("a redirect whose state differs from the stored one is refused before CompleteLogin", async () => {
    const client = newClient(server);
    const stateStore = memoryStateStore();
    const { authorizationUrl, state } = await beginRedirectLogin(client, { redirectUri, stateStore });
    assert.equal(stateStore.value, state);
    const callback = new URL(await authorize(authorizationUrl, newUser()));
    callback.searchParams.set("state", "forged-state");
    await assert.rejects(
      completeRedirectLogin(client, { callbackUrl: callback, stateStore }),
      (e: unknown) => e instanceof LoginRedirectError && e.kind === "STATE_MISMATCH",
    );
    assert.equal(await client.session.signedIn(), false);
    // The genuine state is still unused on the server, but the stored copy is gone: a second
    // attempt with it fails on the server as an unknown state only after a real redirect.
    assert.equal(stateStore.value, undefined);
  });

  test("a Google-style ID token signs in once", async () => {
    const client = newClient(server);
    const nonce = `n-${Date.now()}`;
    const user = newUser("gis");
    const idToken = await devIdToken(server.issuer, user, nonce);
    const res = await signInWithIdToken(client, { idToken, nonce, deviceName: "gis" });
    assert.equal(res.user?.email, user.email);
    assert.equal((await client.auth.getCurrentUser({})).user?.id, res.user?.id);
    const current = (await client.auth.listSessions({})).sessions.find((s) => s.current);
    assert.equal(current?.signInMethod, SignInMethod.GOOGLE_ID_TOKEN);
    // The same ID token is accepted once only.
    const again = await signInWithIdToken(newClient(server), { idToken, nonce }).then(
      () => assert.fail("an ID token was accepted twice"),
      (e: unknown) => describeError(e),
    );
    assert.equal(again.code, Code.Unauthenticated);
    assert.equal(again.reason, "ID_TOKEN_INVALID");
  });

  test("calls without a session carry no token and read ACCESS_TOKEN_MISSING", async () => {
    const client = newClient(server);
    // The server refuses these before reading the request body and closes the HTTP/1.1
    // connection, so some writes fail with EPIPE; the client sends those again and every call
    // ends with the server's answer.
    for (let i = 0; i < 100; i += 1) {
      const err = await client.preferences.getPreferences({}).then(
        () => assert.fail("accepted without a token"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.Unauthenticated, err.message);
      assert.equal(errorReason(err), Reason.ACCESS_TOKEN_MISSING);
    }
  });
});

describe("resending unsent requests", () => {
  // What Node's http client reports when the connection closes while the request body is still
  // being written.
  const epipe = () => Object.assign(new Error("write EPIPE"), { code: "EPIPE", errno: -32, syscall: "write" });

  for (const [httpVersion, attempts] of [
    ["1.1", 2],
    ["2", 1],
  ] as const) {
    test(`a request cut while being written is sent again over HTTP/${httpVersion} ${attempts === 2 ? "once more" : "never"}`, async () => {
      let sent = 0;
      // Innermost, where the network is: the first request fails as its write does.
      const cutFirstWrite: Interceptor = (next) => async (req) => {
        sent += 1;
        if (sent === 1) throw new ConnectError("write EPIPE", Code.Unavailable, undefined, undefined, epipe());
        return await next(req);
      };
      const client = createAssistdClient({
        baseUrl: server.baseUrl,
        httpVersion,
        transport: (init) =>
          createGrpcWebTransport({ baseUrl: init.baseUrl, interceptors: [...init.interceptors, cutFirstWrite], httpVersion }),
      });
      const err = await client.preferences.getPreferences({}).then(
        () => assert.fail("accepted without a token"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(sent, attempts);
      if (httpVersion === "1.1") {
        // Sent again, and answered by the server itself.
        assert.equal(err.code, Code.Unauthenticated);
        assert.equal(errorReason(err), Reason.ACCESS_TOKEN_MISSING);
      } else {
        assert.equal(err.code, Code.Unavailable);
        assert.match(err.rawMessage, /EPIPE/);
      }
    });
  }
});

describe("error helpers", () => {
  test("an unknown timezone is a field violation on preferences.timezone", async () => {
    const client = newClient(server);
    await signIn(client);
    const err = await client.preferences
      .updatePreferences({
        preferences: { timezone: "Mars/Olympus" },
        updateMask: { paths: ["timezone"] },
      })
      .then(
        () => assert.fail("Mars/Olympus was accepted"),
        (e: unknown) => e,
      );
    const violations = fieldViolations(err);
    assert.deepEqual(Object.keys(violations), ["preferences.timezone"]);
    assert.match(violations["preferences.timezone"]![0]!, /timezone/i);
    const d = describeError(err);
    assert.equal(d.code, Code.InvalidArgument);
    assert.equal(d.codeName, "InvalidArgument");
    assert.ok(d.message.length > 0);
    assert.equal(d.retryDelayMs, undefined);
    // A stale etag is ABORTED with ErrorInfo ETAG_MISMATCH.
    const stale = await client.preferences.updatePreferences({
      preferences: { theme: Theme.DARK },
      updateMask: { paths: ["theme"] },
    });
    await client.preferences.updatePreferences({
      preferences: { theme: Theme.LIGHT },
      updateMask: { paths: ["theme"] },
    });
    const aborted = await client.preferences
      .updatePreferences({
        preferences: { theme: Theme.SYSTEM },
        updateMask: { paths: ["theme"] },
        etag: stale.preferences!.etag,
      })
      .then(
        () => assert.fail("a stale etag was accepted"),
        (e: unknown) => describeError(e),
      );
    assert.equal(aborted.code, Code.Aborted);
    assert.equal(aborted.reason, Reason.ETAG_MISMATCH);
    assert.equal(aborted.errorInfo?.domain, "assistd");
  });

  test("a missing chat session is NOT_FOUND with ResourceInfo", async () => {
    const client = newClient(server);
    await signIn(client);
    const id = "0190b6b2-0000-7000-8000-000000000000";
    const d = await client.chat.getSession({ sessionId: id }).then(
      () => assert.fail("found a session that does not exist"),
      (e: unknown) => describeError(e),
    );
    assert.equal(d.code, Code.NotFound);
    assert.ok(d.resourceInfo, "ResourceInfo is present");
    assert.equal(d.resourceInfo.resourceName, id);
    assert.ok(d.resourceInfo.resourceType.length > 0);
  });

  test("a rate-limited sign-in is RESOURCE_EXHAUSTED with a RetryInfo delay", async () => {
    // A server of its own: assistd dev allows 60 sign-in calls a minute from one address.
    const limited = new DevServer(join(work, "limited-data"), join(work, "limited.log"));
    await limited.start();
    try {
      const client = newClient(limited);
      let err: unknown;
      for (let i = 0; i < 100 && err === undefined; i += 1) {
        await beginRedirectLogin(client, { redirectUri, stateStore: memoryStateStore() }).catch((e: unknown) => (err = e));
      }
      const d = describeError(err);
      assert.equal(d.code, Code.ResourceExhausted);
      assert.equal(d.reason, Reason.RATE_LIMITED);
      assert.ok(d.retryDelayMs !== undefined && d.retryDelayMs > 0 && d.retryDelayMs <= 60_000, `delay ${d.retryDelayMs}`);
    } finally {
      await limited.stop();
    }
  });

  test("backoff grows, is capped and jittered", () => {
    const opts = { initialMs: 100, maxMs: 1_000, multiplier: 2 };
    assert.equal(backoffDelay(0, { ...opts, random: () => 0 }), 50);
    assert.equal(backoffDelay(0, { ...opts, random: () => 0.999999 }), 100);
    assert.equal(backoffDelay(3, { ...opts, random: () => 0 }), 400);
    assert.equal(backoffDelay(20, { ...opts, random: () => 0.999999 }), 1_000);
    assert.equal(backoffDelay(20, { ...opts, random: () => 0 }), 500);
  });
});

describe("session end", () => {
  test("a session revoked from another device is reported and cleared", async () => {
    const ended: SessionEndedEvent[] = [];
    const phone = newClient(server, { onSessionEnded: (e) => ended.push(e) });
    const user = newUser("two-devices");
    await signIn(phone, "phone", user);
    const laptop = newClient(server);
    await signIn(laptop, "laptop", user);
    await phone.preferences.getPreferences({});

    const phoneSession = (await phone.session.tokens())!.sessionId;
    await laptop.auth.revokeSession({ sessionId: phoneSession });

    const err = await phone.preferences.getPreferences({}).then(
      () => assert.fail("a revoked session still works"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(errorReason(err), Reason.SESSION_REVOKED);
    assert.equal(ended.length, 1);
    assert.equal(ended[0]!.reason, Reason.SESSION_REVOKED);
    assert.equal(await phone.session.signedIn(), false);
    // The laptop is unaffected.
    await laptop.preferences.getPreferences({});
  });

  test("signOut ends the session on the server and tells the app", async () => {
    const ended: SessionEndedEvent[] = [];
    const client = newClient(server, { onSessionEnded: (e) => ended.push(e) });
    await signIn(client);
    const old = (await client.session.tokens())!;
    await client.signOut();
    assert.deepEqual(
      ended.map((e) => e.reason),
      ["SIGNED_OUT"],
    );
    assert.equal(await client.session.signedIn(), false);
    // The old tokens no longer work anywhere.
    const other = newClient(server);
    await other.session.setTokens(old);
    await assert.rejects(other.auth.getCurrentUser({}), (e: unknown) => errorReason(e) === Reason.SESSION_REVOKED);
    await assert.rejects(
      other.auth.refresh({ refreshToken: old.refreshToken }),
      (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated,
    );
  });

  test("a replayed refresh token revokes the session and the interceptor reports it", async () => {
    const ended: SessionEndedEvent[] = [];
    const client = newClient(server, { onSessionEnded: (e) => ended.push(e) });
    await signIn(client);
    const first = (await client.session.tokens())!;
    // Rotate twice: the first refresh token's successor is used up too, so presenting the first
    // one again is a replay, not a lost response inside the grace window.
    await client.session.refresh();
    await client.session.refresh();
    assert.equal(client.session.refreshCount, 2);
    const thief = newClient(server);
    const replay = await thief.auth.refresh({ refreshToken: first.refreshToken }).then(
      () => assert.fail("a replayed refresh token was accepted"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(errorReason(replay), Reason.REFRESH_TOKEN_REUSED);
    // The rightful client's next call finds its session revoked and reports the end.
    await assert.rejects(client.preferences.getPreferences({}), (e: unknown) => errorReason(e) === Reason.SESSION_REVOKED);
    assert.equal(ended.length, 1);
    assert.equal(ended[0]!.reason, Reason.SESSION_REVOKED);
    assert.equal(await client.session.signedIn(), false);
  });
});

describe("refresh", () => {
  test("a Refresh answered after signOut does not sign the client in again", async () => {
    let release!: () => void;
    const gate = new Promise<void>((ok) => (release = ok));
    let answered!: () => void;
    const refreshAnswered = new Promise<void>((ok) => (answered = ok));
    // Holds the Refresh answer on its way back, like a slow network, until signOut is done.
    const slowRefreshAnswer: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (req.method.name === "Refresh") {
        answered();
        await gate;
      }
      return res;
    };
    const ended: SessionEndedEvent[] = [];
    const client = newClient(server, { onSessionEnded: (e) => ended.push(e) }, [slowRefreshAnswer]);
    await signIn(client);
    const refreshing = client.session.refresh().then(
      () => assert.fail("a Refresh that finished after signOut was taken"),
      (e: unknown) => ConnectError.from(e),
    );
    await refreshAnswered; // the server has rotated the tokens; the client has not seen them yet
    await client.signOut();
    release();
    const err = await refreshing;
    assert.equal(err.code, Code.Unauthenticated);
    assert.match(err.rawMessage, /signed out/);
    assert.equal(await client.session.tokens(), undefined);
    assert.equal(await client.session.signedIn(), false);
    assert.deepEqual(
      ended.map((e) => e.reason),
      ["SIGNED_OUT"],
    );
    assert.equal(client.wire.count("Refresh"), 1);
  });

  test("a Refresh that gets no answer fails after its timeout with a clear error and keeps the session", async () => {
    const link = await FaultyLink.start(server.baseUrl);
    try {
      const client = newClient(link, { refreshTimeoutMs: 500 });
      await signIn(client);
      const signedIn = await client.session.tokens();
      link.stalled = true;
      const outcome = await Promise.race([
        client.session.refresh().then(
          () => "refreshed",
          (e: unknown) => ConnectError.from(e),
        ),
        sleep(20_000).then(() => "no answer in 20 s"),
      ]);
      assert.ok(outcome instanceof ConnectError, `Refresh settled with: ${String(outcome)}`);
      assert.equal(outcome.code, Code.DeadlineExceeded);
      assert.match(outcome.rawMessage, /Refresh .*500 ms/);
      assert.deepEqual(await client.session.tokens(), signedIn, "a timeout keeps the tokens");
      // The next Refresh is a new attempt, not the stuck one.
      link.stalled = false;
      const fresh = await client.session.refresh();
      assert.notEqual(fresh.accessToken, signedIn!.accessToken);
      assert.equal(client.wire.count("Refresh"), 2);
    } finally {
      await link.stop();
    }
  });
});

describe("preferences watch", () => {
  test("reconnects after the server restarts and delivers a later change", async () => {
    const user = newUser("watch");
    const watcher = newClient(server);
    await signIn(watcher, "watcher", user);
    const writer = newClient(server);
    await signIn(writer, "writer", user);
    const baseline = await writer.preferences.updatePreferences({
      preferences: { language: "en", theme: Theme.LIGHT },
      updateMask: { paths: ["theme", "language"] },
    });

    const seen: Preferences[] = [];
    const states: WatchState[] = [];
    const errors: Code[] = [];
    let wake: (() => void) | undefined;
    const next = (pred: (p: Preferences) => boolean, ms: number) =>
      new Promise<Preferences>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no matching preferences in ${ms} ms`)), ms);
        const check = () => {
          const hit = seen.find(pred);
          if (hit) {
            clearTimeout(timer);
            wake = undefined;
            ok(hit);
          } else wake = check;
        };
        check();
      });
    const abort = new AbortController();
    const watch = watchPreferences(watcher, {
      signal: abort.signal,
      backoff: { initialMs: 100, maxMs: 1_000 },
      onPreferences: (p) => {
        seen.push(create(PreferencesSchema, p));
        wake?.();
      },
      onError: (e) => errors.push(e.code),
      onStateChange: (s) => states.push(s),
    });

    const first = await next((p) => p.etag === baseline.preferences!.etag, 10_000);
    assert.equal(first.theme, Theme.LIGHT);

    await server.restart();

    const changed = await writer.preferences.updatePreferences({
      preferences: { theme: Theme.DARK, timezone: "Europe/Berlin" },
      updateMask: { paths: ["theme", "timezone"] },
    });
    const later = await next((p) => p.etag === changed.preferences!.etag, 20_000);
    assert.equal(later.theme, Theme.DARK);
    assert.equal(later.timezone, "Europe/Berlin");
    assert.ok(errors.length >= 1, "the restart was noticed as an error");
    assert.ok(states.filter((s) => s === "connecting").length >= 2, `reconnected: ${states.join(",")}`);

    abort.abort();
    await watch.done;
    assert.equal(states.at(-1), "stopped");
  });

  test("a stream that opens and then fails keeps its backoff; a healthy stream resets it", async () => {
    const link = await FaultyLink.start(server.baseUrl);
    try {
      const client = newClient(link);
      await signIn(client, "flaky link");
      const delays: (number | undefined)[] = [];
      let opened = 0;
      let onOpen: (() => void) | undefined;
      const watch = watchPreferences(client, {
        backoff: { initialMs: 100, maxMs: 10_000, multiplier: 2, random: () => 0, healthyAfterMs: 1_500 },
        onPreferences: () => {},
        onError: (_e, willRetry, delayMs) => {
          assert.ok(willRetry);
          delays.push(delayMs);
        },
        onStateChange: (s) => {
          if (s === "open") {
            opened += 1;
            onOpen?.();
          }
        },
      });
      const nextOpen = (n: number) =>
        new Promise<void>((ok) => {
          onOpen = () => opened >= n && ok();
          onOpen();
        });
      // Each time the stream opens (its first message arrived), the link drops it at once.
      for (let n = 1; n <= 4; n += 1) {
        await nextOpen(n);
        link.cut();
      }
      await nextOpen(5);
      // Open-then-fail cycles do not reset the backoff: 50, 100, 200, 400 ms (random() = 0
      // gives the lower half of the jitter).
      assert.deepEqual(delays, [50, 100, 200, 400]);
      // Healthy for longer than healthyAfterMs: the next failure starts from the first step.
      await sleep(2_000);
      link.cut();
      await nextOpen(6);
      assert.deepEqual(delays, [50, 100, 200, 400, 50]);
      watch.stop();
      await watch.done;
    } finally {
      await link.stop();
    }
  });

  test("stops when the session is signed out", async () => {
    const client = newClient(server);
    await signIn(client);
    let got = 0;
    const watch = watchPreferences(client, { onPreferences: () => (got += 1) });
    const deadline = Date.now() + 10_000;
    while (got === 0 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
    assert.equal(got, 1);
    await client.signOut();
    await watch.done;
  });
});

describe("access token expiry", () => {
  test("20 parallel calls with an expired token cause exactly one Refresh and all succeed", async () => {
    const tokens = (await expiring.session.tokens())!;
    const expiredAt = tokens.accessTokenExpiresAt + LEEWAY_MS + 1_500;
    const wait = expiredAt - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));

    // The server really refuses the old token now (asked without the session's interceptor).
    const probe = newClient(server);
    const expired = await probe.auth.getCurrentUser({}, { headers: { authorization: `Bearer ${tokens.accessToken}` } }).then(
      () => assert.fail("the access token is still accepted"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(errorReason(expired), Reason.ACCESS_TOKEN_EXPIRED);

    const since = Date.now() - 1_000;
    const before = expiring.session.refreshCount;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => expiring.preferences.getPreferences({})),
    );
    assert.equal(results.length, 20);
    for (const r of results) assert.ok(r.preferences);
    const refreshes = expiring.session.refreshCount - before;
    assert.equal(refreshes, 1, "one Refresh for 20 calls");
    // Counted on the wire too: one Refresh request went to the server, and it answered OK.
    assert.equal(expiring.wire.count("Refresh"), 1);
    assert.deepEqual(
      expiring.wire.answers.filter((a) => a.method === "Refresh").map((a) => a.code),
      ["OK"],
    );
    // Each call was refused once with the old token and answered once with the new one.
    const answers = expiring.wire.answers.filter((a) => a.method === "GetPreferences");
    assert.equal(answers.filter((a) => a.code === "OK").length, 20);
    assert.equal(answers.filter((a) => a.code === Code.Unauthenticated).length, 20);
    assert.equal(expiringRefreshes, 1);
    const fresh = (await expiring.session.tokens())!;
    assert.notEqual(fresh.accessToken, tokens.accessToken);
    assert.notEqual(fresh.refreshToken, tokens.refreshToken);

    // The server's audit trail agrees: one TOKEN_REFRESHED since the burst began.
    assert.equal(await auditCount(expiring, AuditAction.TOKEN_REFRESHED, since), 1);
    // And the next call goes through on the new token without another Refresh.
    await expiring.auth.getCurrentUser({});
    assert.equal(expiring.session.refreshCount - before, 1);
    console.log(`refresh count under 20 parallel expired calls: ${refreshes}`);
  });

  test("unary and streaming calls keep working through one Refresh", async () => {
    const tokens = (await throughRefresh.session.tokens())!;
    const sentBefore = throughRefresh.wire.count("Refresh");
    assert.equal(sentBefore, 0);
    const wait = tokens.accessTokenExpiresAt + LEEWAY_MS + 1_500 - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));

    const prefs = await throughRefresh.preferences.getPreferences({});
    assert.ok(prefs.preferences);
    const reply = await streamReply(throughRefresh, throughRefreshChat, "hello through a refresh");
    assert.match(reply, /hello through a refresh/);
    const messages = await throughRefresh.chat.listMessages({ sessionId: throughRefreshChat, pageSize: 10 });
    assert.equal(messages.messages.length, 2);
    assert.equal(throughRefresh.wire.count("Refresh"), 1, "one Refresh request on the wire");
    assert.notEqual((await throughRefresh.session.tokens())!.accessToken, tokens.accessToken);
  });

  test("a stream refused with ACCESS_TOKEN_EXPIRED before its first message refreshes and opens again (client clock behind)", async () => {
    for (const client of [behindChat, behindWatch]) {
      const tokens = (await client.session.tokens())!;
      const serverExpiry = tokens.accessTokenExpiresAt - CLOCK_BEHIND_MS + LEEWAY_MS + 1_500;
      const wait = serverExpiry - Date.now();
      if (wait > 0) await sleep(wait);
      assert.ok(Date.now() < tokens.accessTokenExpiresAt, "the client still believes its token valid");
    }

    const reply = await streamReply(behindChat, behindChatSession, "hello from a slow clock");
    assert.match(reply, /hello from a slow clock/);
    assert.equal(behindChat.wire.count("Refresh"), 1);
    assert.equal(behindChat.wire.count("StreamMessage"), 2, "refused once, then sent with the new token");
    const messages = await behindChat.chat.listMessages({ sessionId: behindChatSession, pageSize: 10 });
    assert.equal(messages.messages.length, 2, "one exchange stored");

    const abort = new AbortController();
    let first: Preferences | undefined;
    for await (const ev of behindWatch.preferences.watchPreferences({}, { signal: abort.signal })) {
      first = ev.preferences;
      break;
    }
    abort.abort();
    assert.ok(first, "the watch delivered the current preferences");
    assert.equal(behindWatch.wire.count("Refresh"), 1);
    assert.equal(behindWatch.wire.count("WatchPreferences"), 2);
  });

  test("a watch opened with an expired token refreshes once and delivers", async () => {
    const tokens = (await expiringWatcher.session.tokens())!;
    const wait = tokens.accessTokenExpiresAt + LEEWAY_MS + 1_500 - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    const abort = new AbortController();
    const seen: Preferences[] = [];
    const errors: string[] = [];
    const watch = watchPreferences(expiringWatcher, {
      signal: abort.signal,
      onError: (e) => errors.push(e.message),
      onPreferences: (p) => {
        seen.push(p);
        abort.abort();
      },
    });
    await watch.done;
    assert.equal(seen.length, 1);
    assert.equal(expiringWatcher.session.refreshCount, 1);
    // Refreshed before the stream was opened: the server never refused it.
    assert.deepEqual(errors, []);
    assert.notEqual((await expiringWatcher.session.tokens())!.accessToken, tokens.accessToken);
  });
});
