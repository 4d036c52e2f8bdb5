// The web app in headless Chromium against a real `assistd dev` (its OpenID provider and local
// model) on free loopback ports with a temporary data directory. Everything started here is
// stopped in `after`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { execFileSync, spawn } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { startStaticServer } from "../serve.mjs";
import type { StaticServer } from "../serve.mjs";

// dist-test/web.test.js → clients/web
const webDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = resolve(webDir, "../..");
const artifacts = join(webDir, "test-artifacts");
const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

async function freePort(): Promise<number> {
  return await new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

async function accepting(port: number): Promise<boolean> {
  return await new Promise((ok) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      ok(true);
    });
    s.once("error", () => ok(false));
  });
}

/** One `assistd dev` with its temporary data directory and a static server for the app. */
interface Stack {
  /** The app's origin, e.g. http://127.0.0.1:PORT. */
  url: string;
  providerUrl: string;
  /** assistd's grpc-web address. */
  apiUrl: string;
  app: StaticServer;
  stop(): Promise<void>;
}

const stacks: Stack[] = [];

/** A certificate and key (PEM files) for `assistd dev --tls-cert/--tls-key`. */
interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/**
 * Starts `assistd dev` (with `extraArgs`) on free loopback ports and serves the app for it;
 * over TLS with `tls` (the app is told the https:// URL).
 */
async function startStack(name: string, extraArgs: string[] = [], tls?: TlsFiles): Promise<Stack> {
  const [api, provider, model, web] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), "assistd-web-"));
  const webOrigin = `http://127.0.0.1:${web}`;
  const bin = process.env.SERVER_BIN ?? join(repoRoot, "target/debug/assistd");
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("ASSISTD_") && k !== "DATABASE_URL" && k !== "RUST_LOG"),
  );
  const dev = spawn(
    bin,
    [
      "dev",
      "--data-dir", dataDir,
      "--listen", `127.0.0.1:${api}`,
      "--provider-listen", `127.0.0.1:${provider}`,
      "--model-listen", `127.0.0.1:${model}`,
      "--allow-origin", webOrigin,
      "--redirect-uri", `${webOrigin}/auth/callback`,
      ...(tls ? ["--tls-cert", tls.certFile, "--tls-key", tls.keyFile] : []),
      ...extraArgs,
    ],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  devs.push(dev);
  const log = createWriteStream(join(artifacts, `${name}.log`));
  dev.stdout!.pipe(log);
  dev.stderr!.pipe(log);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (dev.exitCode !== null) throw new Error(`assistd dev exited with ${dev.exitCode}; see test-artifacts/${name}.log`);
    if ((await accepting(api)) && (await accepting(provider)) && (await accepting(model))) break;
    if (Date.now() > deadline) throw new Error("assistd dev did not listen in 30 s");
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const apiUrl = `${tls ? "https" : "http"}://127.0.0.1:${api}`;
  const app = await startStaticServer({ port: web, apiUrl });
  const stack: Stack = {
    url: app.url,
    providerUrl: `http://127.0.0.1:${provider}`,
    apiUrl,
    app,
    async stop() {
      await app.close();
      if (dev.exitCode === null && dev.signalCode === null) {
        const exited = new Promise((ok) => dev.once("exit", ok));
        dev.kill("SIGTERM");
        const timer = setTimeout(() => dev.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  stacks.push(stack);
  return stack;
}

const devs: ChildProcess[] = [];
let main: Stack | undefined;
let otherOrigin: StaticServer | undefined;
let browser: Browser | undefined;
const contexts: BrowserContext[] = [];

process.on("exit", () => {
  for (const d of devs) d.kill("SIGKILL");
});

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  main = await startStack("assistd-dev");
  // Serves the same app from an origin the server does not allow.
  otherOrigin = await startStaticServer({ port: await freePort(), apiUrl: main.apiUrl });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await otherOrigin?.close();
  for (const s of stacks) await s.stop();
});

async function newPage(): Promise<Page> {
  return await newPageIn(browser!);
}

/** A page in a fresh context of `b`, closed in `after`. */
async function newPageIn(b: Browser): Promise<Page> {
  const context = await b.newContext({ viewport: { width: 1100, height: 720 } });
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  return page;
}

/** The whole redirect sign-in, as a person does it; returns the URLs the tab went through. */
async function signIn(page: Page, email: string, device: string, stack: Stack = main!): Promise<string[]> {
  const visited: string[] = [];
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) visited.push(f.url());
  });
  await page.goto(stack.url);
  await page.locator("#screen-signin").waitFor();
  await page.fill("#device-name", device);
  await page.click("#sign-in");
  await page.waitForURL((u) => u.origin === stack.providerUrl);
  await page.fill('input[name="email"]', email);
  await page.fill('input[name="name"]', email.split("@")[0] ?? "someone");
  await page.click('button[type="submit"]');
  await page.waitForURL(`${stack.url}/`);
  await page.locator("#screen-chat").waitFor();
  await assert.doesNotReject(page.locator("#whoami", { hasText: email }).waitFor());
  return visited;
}

/** Stores a key the local model accepts, through the API key screen, and goes back to the chat. */
async function storeApiKey(page: Page): Promise<void> {
  await page.click('#nav [data-screen="apikey"]');
  await page.locator("#key-hint", { hasText: "none" }).waitFor();
  await page.fill("#api-key", "dev-frontend-key-01");
  await page.click("#key-save");
  await page.locator("#key-status", { hasText: "valid" }).waitFor();
  await page.click('#nav [data-screen="chat"]');
}

/** Whether the bottom of `li` is inside the scrolled conversation's visible part. */
async function endInView(li: Locator): Promise<boolean> {
  return await li.evaluate((item) => {
    const box = document.getElementById("messages")!.getBoundingClientRect();
    const r = item.getBoundingClientRect();
    return r.bottom <= box.bottom + 1 && r.bottom > box.top;
  });
}

/** Types a message, sends it and waits for the finished reply that matches `reply`. */
async function chat(page: Page, text: string, reply: RegExp | string): Promise<void> {
  await page.fill("#message", text);
  await page.click("#send");
  await page.locator('#messages li.model[data-state="done"]', { hasText: reply }).waitFor({ timeout: 60_000 });
  await page.locator("#send:not([disabled])").waitFor();
}

/**
 * The server accepts an access token up to 30 s past its expiry time (clock skew between
 * replicas); only later does it answer UNAUTHENTICATED / ACCESS_TOKEN_EXPIRED.
 */
const SERVER_LEEWAY_MS = 30_000;

/** Waits until the page's access token is `beyond` ms past its expiry time (by the page's clock). */
async function untilAccessTokenExpired(page: Page, beyond = 0): Promise<void> {
  await page.waitForFunction(
    (beyondMs) => {
      const raw = sessionStorage.getItem("assistd.tokens");
      return raw !== null && Date.now() > (JSON.parse(raw) as { accessTokenExpiresAt: number }).accessTokenExpiresAt + beyondMs + 500;
    },
    beyond,
    { polling: 100, timeout: beyond + 30_000 },
  );
}

describe("access tokens that expire while the app is open", () => {
  let short: Stack | undefined;
  before(async () => {
    short = await startStack("assistd-dev-short-tokens", ["--access-token-ttl", "1s"]);
  });

  test("calls after expiry succeed through one Refresh, also 20 at once", async () => {
    const page = await newPage();
    const refreshes: string[] = [];
    const apiCalls: string[] = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/assistd.auth.v1.AuthService/Refresh")) refreshes.push(r.url());
      else if (r.url().startsWith(short!.apiUrl)) apiCalls.push(r.url());
    });
    await signIn(page, "ttl@example.com", "Laptop", short);
    await storeApiKey(page);

    // A call once the server refuses the token: the devices screen loads as if nothing happened.
    await untilAccessTokenExpired(page, SERVER_LEEWAY_MS);
    const before1 = refreshes.length;
    await page.click('#nav [data-screen="devices"]');
    await page.locator("#devices li", { hasText: "Laptop (this device)" }).waitFor();
    assert.equal(await page.textContent("#devices-error"), "");
    assert.equal(await page.isVisible("#screen-signin"), false);
    assert.equal(refreshes.length - before1, 1, "the expired token was refreshed once");

    // 20 calls fired together once the server refuses the token: one Refresh, and all 20 succeed.
    await untilAccessTokenExpired(page, SERVER_LEEWAY_MS);
    const before20 = refreshes.length;
    const callsBefore20 = apiCalls.length;
    const outcomes = await page.evaluate(async () => {
      const c = window.assistd!.client;
      const calls = Array.from({ length: 20 }, (_, i) => {
        switch (i % 4) {
          case 0: return c.auth.getCurrentUser({});
          case 1: return c.chat.listSessions({ pageSize: 5 });
          case 2: return c.preferences.getPreferences({});
          default: return c.apiKeys.getTokenBudget({});
        }
      });
      const settled = await Promise.allSettled(calls);
      return settled.map((s) => (s.status === "fulfilled" ? "ok" : String(s.reason)));
    });
    const parallelRefreshes = refreshes.length - before20;
    console.log(`20 parallel calls after access-token expiry: ${outcomes.filter((o) => o === "ok").length} succeeded, Refresh requests: ${parallelRefreshes}`);
    assert.deepEqual(outcomes, Array(20).fill("ok"));
    assert.equal(parallelRefreshes, 1);
    assert.equal(apiCalls.length - callsBefore20, 40, "each call was refused as expired once, then sent again with the new token");

    // A streamed reply after expiry: the client refreshes before opening the stream (a started
    // stream cannot be sent again), as soon as its own clock says the token has expired.
    await page.click('#nav [data-screen="chat"]');
    await untilAccessTokenExpired(page);
    const beforeStream = refreshes.length;
    await chat(page, "hello after expiry", 'You said: "hello after expiry"');
    assert.equal(refreshes.length - beforeStream, 1);
    assert.equal(await page.textContent("#chat-error"), "");
    assert.equal(await page.isVisible("#screen-signin"), false);
  });
});

describe("web app against assistd dev", () => {
  test("signs in through the development provider with PKCE and signs out", async () => {
    const page = await newPage();
    await page.goto(main!.url);
    await page.locator("#screen-signin").waitFor();
    await page.screenshot({ path: join(artifacts, "sign-in.png") });

    const visited = await signIn(page, "ada@example.com", "Laptop");
    const authorize = visited.find((u) => u.startsWith(main!.providerUrl));
    assert.ok(authorize, `the tab visited the provider: ${visited.join(" → ")}`);
    const authUrl = new URL(authorize);
    assert.equal(authUrl.searchParams.get("code_challenge_method"), "S256");
    assert.ok((authUrl.searchParams.get("code_challenge") ?? "").length >= 43);
    assert.equal(authUrl.searchParams.get("redirect_uri"), `${main!.url}/auth/callback`);
    const callback = visited.find((u) => u.startsWith(`${main!.url}/auth/callback`));
    assert.ok(callback, `the provider redirected to the callback: ${visited.join(" → ")}`);
    assert.ok(new URL(callback).searchParams.get("code"));
    assert.equal(new URL(callback).searchParams.get("state"), authUrl.searchParams.get("state"));
    assert.ok(await page.evaluate(() => sessionStorage.getItem("assistd.tokens")));

    // A reload keeps the session of this tab.
    await page.reload();
    await page.locator("#whoami", { hasText: "ada@example.com" }).waitFor();

    await page.click("#sign-out");
    await page.locator("#screen-signin").waitFor();
    assert.equal(await page.textContent("#signin-reason"), "You signed out.");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("assistd.tokens")), null);
    await page.reload();
    await page.locator("#screen-signin").waitFor();
    assert.equal(await page.isVisible("#nav"), false);
  });

  test("API key, then chat: deltas on screen before the reply ends, stop keeps the partial reply, retry reuses the id", async () => {
    const page = await newPage();
    await signIn(page, "grace@example.com", "Desktop");

    await page.click('#nav [data-screen="apikey"]');
    await page.locator("#key-hint", { hasText: "none" }).waitFor();
    await page.fill("#api-key", "short");
    await page.click("#key-save");
    await page.locator("#api-key-error").filter({ hasText: /\S/ }).waitFor();
    assert.equal(await page.textContent("#key-message"), "", "the error is the field's, next to it");
    console.log(`a short key: ${await page.textContent("#api-key-error")}`);
    await page.fill("#api-key", "dev-frontend-key-01");
    await page.click("#key-save");
    await page.locator("#key-status", { hasText: "valid" }).waitFor();
    assert.equal(await page.textContent("#api-key-error"), "");
    const hint = (await page.textContent("#key-hint")) ?? "";
    assert.notEqual(hint, "none");
    assert.ok(!hint.includes("dev-frontend-key-01"), `the hint is masked: ${hint}`);
    await page.click("#key-validate");
    await page.locator("#key-status", { hasText: "valid" }).waitFor();
    await page.screenshot({ path: join(artifacts, "api-key.png") });

    // A fresh page load, then a message: when does the first delta show, when does the reply end?
    await page.goto(main!.url);
    await page.locator("#screen-chat").waitFor();
    await page.evaluate(() => {
      const w = window as unknown as { timings: Record<string, number> };
      w.timings = {};
      new MutationObserver(() => {
        const reply = document.querySelector<HTMLElement>("#messages li.model");
        if (!reply) return;
        if (!w.timings.firstDelta && (reply.textContent ?? "").length > 0) w.timings.firstDelta = performance.now();
        if (!w.timings.done && reply.dataset.state === "done") w.timings.done = performance.now();
      }).observe(document.getElementById("messages")!, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await page.fill("#message", "hello there");
    await page.evaluate(() => ((window as unknown as { timings: Record<string, number> }).timings.sent = performance.now()));
    await page.click("#send");
    await page.locator('#messages li.model[data-state="done"]').waitFor({ timeout: 60_000 });
    const t = await page.evaluate(() => (window as unknown as { timings: Record<string, number> }).timings);
    const reply = (await page.textContent("#messages li.model")) ?? "";
    assert.match(reply, /You said: "hello there"/);
    assert.ok(t.firstDelta !== undefined && t.done !== undefined && t.sent !== undefined, JSON.stringify(t));
    assert.ok(t.firstDelta! < t.done!, `first delta at ${t.firstDelta}, reply done at ${t.done}`);
    assert.ok(t.done! - t.firstDelta! > 200, `the reply kept streaming after the first delta: ${JSON.stringify(t)}`);
    console.log(
      `page load → first delta on screen: ${Math.round(t.firstDelta!)} ms; send → first delta: ${Math.round(t.firstDelta! - t.sent!)} ms; ` +
        `first delta → reply done: ${Math.round(t.done! - t.firstDelta!)} ms (${reply.split(/\s+/).length} words)`,
    );
    await page.locator("#sessions li", { hasText: "hello there" }).waitFor();
    await page.screenshot({ path: join(artifacts, "chat.png") });

    // Stop mid-reply: the words that arrived stay on screen.
    await page.fill("#message", "tell me a long story");
    await page.click("#send");
    const second = page.locator("#messages li.model").nth(1);
    await page.waitForFunction(() => (document.querySelectorAll("#messages li.model")[1]?.textContent ?? "").split(" ").length >= 3);
    await page.click("#cancel");
    await page.locator('#messages li.model[data-state="cancelled"]').waitFor();
    const partial = (await second.textContent()) ?? "";
    assert.ok(partial.length > 0);
    await page.waitForTimeout(500);
    assert.equal(await second.textContent(), partial, "nothing is added after stopping");
    const words = (s: string) => s.trim().split(/\s+/).length;
    assert.ok(words(partial) < words(reply) - 10, `stopped after ${words(partial)} words; a whole reply has ${words(reply)}`);
    assert.equal(await page.isVisible("#send"), true);

    // A send whose request fails on the way: Retry sends the same client message id once more.
    const bodies: string[] = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/assistd.chat.v1.ChatService/StreamMessage")) bodies.push(r.postDataBuffer()?.toString("base64") ?? "");
    });
    await page.route("**/assistd.chat.v1.ChatService/StreamMessage", (route) => route.abort("connectionreset"), { times: 1 });
    await page.fill("#message", "retry me please");
    await page.click("#send");
    await page.locator("#retry").waitFor();
    assert.match((await page.textContent("#chat-error")) ?? "", /\S/);
    await page.locator('#messages li.user[data-state="failed"]').waitFor();
    await page.click("#retry");
    await page.locator('#messages li.model[data-state="done"]', { hasText: 'You said: "retry me please"' }).waitFor({ timeout: 60_000 });
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0], bodies[1], "the retry is the same request: same session, client message id and text");
    assert.equal(await page.locator("#messages li.user", { hasText: "retry me please" }).count(), 1);
    // What the server kept: the session read back holds the retried message once, with its reply.
    await page.locator("#sessions li.selected").click();
    await page.locator("#messages li.model", { hasText: 'You said: "retry me please"' }).waitFor();
    assert.equal(await page.locator("#messages li.user", { hasText: "retry me please" }).count(), 1);

    await page.click('#nav [data-screen="apikey"]');
    await page.click("#key-delete");
    await page.locator("#key-hint", { hasText: "none" }).waitFor();
  });

  test("two devices: a preference change shows on the other, and a revoked device is signed out on its next call", async () => {
    const laptop = await newPage();
    const phone = await newPage();
    await signIn(laptop, "linus@example.com", "Laptop");
    await signIn(phone, "linus@example.com", "Phone");

    await laptop.click('#nav [data-screen="preferences"]');
    await laptop.locator('#prefs-form[data-loaded="true"]').waitFor();
    await laptop.selectOption("#theme", "2");
    assert.equal(await laptop.getAttribute("html", "data-theme"), "dark", "the theme applies at once");
    await laptop.locator("#prefs-message", { hasText: "Saved." }).waitFor();
    await phone.waitForFunction(() => document.documentElement.dataset.theme === "dark", undefined, { timeout: 15_000 });
    // With the phone's preferences screen open, its form follows too.
    await phone.click('#nav [data-screen="preferences"]');
    await phone.locator('#prefs-form[data-loaded="true"]').waitFor();
    assert.equal(await phone.inputValue("#theme"), "2");
    await laptop.selectOption("#theme", "1");
    await phone.waitForFunction(
      () => (document.getElementById("theme") as HTMLSelectElement).value === "1" && document.documentElement.dataset.theme === "light",
      undefined,
      { timeout: 15_000 },
    );

    // A bad timezone: the server's words next to the timezone field.
    await laptop.fill("#timezone", "Mars/Olympus_Mons");
    await laptop.click("#prefs-save");
    await laptop.locator("#timezone-error", { hasText: "Mars/Olympus_Mons" }).waitFor();
    assert.equal(await laptop.textContent("#language-error"), "");
    assert.notEqual(await laptop.textContent("#prefs-message"), "Saved.");
    await laptop.screenshot({ path: join(artifacts, "preferences-bad-timezone.png") });
    await laptop.fill("#timezone", "Europe/Berlin");
    await laptop.click("#prefs-save");
    await laptop.locator("#prefs-message", { hasText: "Saved." }).waitFor();
    assert.equal(await laptop.textContent("#timezone-error"), "");
    await phone.waitForFunction(() => (document.getElementById("timezone") as HTMLInputElement).value === "Europe/Berlin", undefined, { timeout: 15_000 });
    await laptop.screenshot({ path: join(artifacts, "preferences.png") });

    await laptop.click('#nav [data-screen="devices"]');
    await laptop.locator("#devices li", { hasText: "Laptop (this device)" }).waitFor();
    const phoneRow = laptop.locator("#devices li", { hasText: "Phone" });
    await laptop.screenshot({ path: join(artifacts, "devices.png") });
    await phoneRow.locator("button.revoke").click();
    await phoneRow.waitFor({ state: "detached" });

    // The phone's next call. (Its open WatchPreferences stream may end the session before that.)
    await phone.waitForTimeout(300);
    console.log(`the revoked phone showed the sign-in screen before its next call: ${await phone.isVisible("#screen-signin")}`);
    await phone.click('#nav [data-screen="devices"]');
    await phone.locator("#screen-signin").waitFor({ timeout: 15_000 });
    assert.match((await phone.textContent("#signin-reason")) ?? "", /signed out from another device/);
    assert.equal(await phone.evaluate(() => sessionStorage.getItem("assistd.tokens")), null);
    // The laptop is still signed in.
    await laptop.click("#devices-refresh");
    await laptop.locator("#devices li", { hasText: "Laptop (this device)" }).waitFor();
  });

  test("sessions sidebar: load more, rename, pin, archive and the archived view, delete", async () => {
    const page = await newPage();
    await signIn(page, "sidebar@example.com", "Laptop");
    // 25 titled sessions, oldest first, so "Trip 25" is the most recent.
    await page.evaluate(async () => {
      for (let i = 1; i <= 25; i++) await window.assistd!.client.chat.createSession({ title: `Trip ${i}` });
    });
    await page.click('#nav [data-screen="chat"]');
    const items = page.locator("#sessions li");
    await page.locator("#sessions li", { hasText: "Trip 25" }).waitFor();
    await page.locator("#sessions-more:not([hidden])").waitFor();
    assert.equal(await items.count(), 20, "one page of sessions");
    assert.equal(await items.first().textContent(), "Trip 25");
    await page.click("#sessions-more");
    await page.locator("#sessions li", { hasText: /^Trip 1$/ }).waitFor();
    assert.equal(await items.count(), 25);
    assert.equal(await page.isVisible("#sessions-more"), false, "no more pages");

    // Rename.
    await page.locator("#sessions li", { hasText: /^Trip 3$/ }).click();
    await page.locator("#session-title", { hasText: "Trip 3" }).waitFor();
    await page.click("#rename-session");
    await page.fill("#rename-input", "Lisbon in May");
    await page.click("#rename-save");
    await page.locator("#session-title", { hasText: "Lisbon in May" }).waitFor();
    await page.locator("#sessions li.selected", { hasText: "Lisbon in May" }).waitFor();
    assert.equal(await page.locator("#sessions li", { hasText: /^Trip 3$/ }).count(), 0);
    // A title longer than the server allows: its words next to the field, nothing changed.
    await page.click("#rename-session");
    await page.fill("#rename-input", "x".repeat(201));
    await page.click("#rename-save");
    await page.locator("#rename-error").filter({ hasText: /\S/ }).waitFor();
    console.log(`a 201-character title: ${await page.textContent("#rename-error")}`);
    await page.click("#rename-cancel");
    assert.equal(await page.textContent("#session-title"), "Lisbon in May");

    // Pin: on top of the list, though it is not the most recent.
    await page.click("#pin-session");
    await page.locator("#pin-session", { hasText: "Unpin" }).waitFor();
    await page.locator("#sessions li.pinned", { hasText: "Lisbon in May" }).waitFor();
    await page.locator('#sessions[aria-busy="false"]').waitFor({ state: "attached" });
    assert.match((await items.first().textContent()) ?? "", /Lisbon in May/);
    assert.equal(await items.count(), 25, "the list keeps the sessions it showed");
    await page.screenshot({ path: join(artifacts, "sessions-pinned.png") });

    // Archive: gone from the list, present in the archived view, and back after unarchiving.
    await page.locator("#sessions li", { hasText: /^Trip 24$/ }).click();
    await page.locator("#session-title", { hasText: "Trip 24" }).waitFor();
    await page.click("#archive-session");
    await page.locator("#archive-session", { hasText: "Unarchive" }).waitFor();
    await page.locator("#sessions li", { hasText: /^Trip 24$/ }).waitFor({ state: "detached" });
    await page.click("#toggle-archived");
    await page.locator("#sessions-heading", { hasText: "Archived chats" }).waitFor();
    await page.locator("#sessions li", { hasText: /^Trip 24$/ }).waitFor();
    assert.equal(await items.count(), 1, "only archived sessions");
    await page.screenshot({ path: join(artifacts, "sessions-archived.png") });
    await page.locator("#sessions li", { hasText: /^Trip 24$/ }).click();
    await page.click("#archive-session");
    await page.locator("#sessions-empty:not([hidden])").waitFor();
    await page.click("#toggle-archived");
    await page.locator("#sessions li", { hasText: /^Trip 24$/ }).waitFor();

    // Delete, after a confirmation.
    await page.locator("#sessions li", { hasText: /^Trip 25$/ }).click();
    await page.locator("#session-title", { hasText: "Trip 25" }).waitFor();
    await page.click("#delete-session");
    await page.locator("#delete-confirm:not([hidden])").waitFor();
    await page.click("#delete-cancel");
    assert.equal(await page.isVisible("#delete-confirm"), false);
    await page.click("#delete-session");
    await page.click("#delete-confirmed");
    await page.locator("#sessions li", { hasText: /^Trip 25$/ }).waitFor({ state: "detached" });
    assert.equal(await page.isVisible("#chat-header"), false);
    const left = await page.evaluate(async () => {
      const c = window.assistd!.client.chat;
      const [active, archived] = await Promise.all([c.listSessions({ pageSize: 100 }), c.listSessions({ pageSize: 100, archived: 3 })]);
      return { active: active.sessions.map((s) => s.title), all: archived.sessions.length };
    });
    assert.equal(left.all, 24);
    assert.ok(!left.active.includes("Trip 25"));
    assert.ok(left.active.includes("Lisbon in May"));

    // Someone else signs in in the same tab: nothing of the first account stays on screen.
    await page.locator("#sessions li", { hasText: "Lisbon in May" }).click();
    await page.locator("#session-title", { hasText: "Lisbon in May" }).waitFor();
    await page.click("#sign-out");
    await page.locator("#screen-signin").waitFor();
    await signIn(page, "second@example.com", "Laptop");
    await page.locator('#sessions[aria-busy="false"]').waitFor({ state: "attached" });
    await page.locator("#sessions-empty:not([hidden])").waitFor();
    assert.equal(await page.locator("#sessions li").count(), 0);
    assert.equal(await page.isVisible("#chat-header"), false);
    assert.equal(await page.locator("#messages li").count(), 0);
  });

  test("a long conversation opens at its end, earlier messages load on demand, and search opens a hit in context", async () => {
    const page = await newPage();
    await signIn(page, "pages@example.com", "Laptop");
    await storeApiKey(page);
    // 14 exchanges that each call a tool: 56 messages (user, call, result, reply).
    const sessionId = await page.evaluate(async () => {
      const c = window.assistd!.client.chat;
      const { session } = await c.createSession({ title: "Clock questions" });
      for (let i = 1; i <= 14; i++) {
        await c.sendMessage({ sessionId: session!.id, clientMessageId: crypto.randomUUID(), text: `what time is it, question ${i}` });
      }
      return session!.id;
    });
    await page.click('#nav [data-screen="chat"]');
    await page.locator(`#sessions li[data-id="${sessionId}"]`).click();
    await page.locator("#messages li.user", { hasText: "question 14" }).waitFor();
    assert.equal(await page.locator("#messages li").count(), 50, "the newest 50 messages");
    assert.equal(await page.locator("#messages li.user", { hasText: /question 1$/ }).count(), 0);
    // The tool calls of the history are shown in the conversation.
    assert.ok((await page.locator("#messages li.tool-call", { hasText: "current_time" }).count()) >= 12);
    assert.ok((await page.locator("#messages li.tool-result", { hasText: "current_time" }).count()) >= 12);
    const last = page.locator("#messages li").last();
    assert.ok(await last.evaluate((li) => {
      const box = document.getElementById("messages")!.getBoundingClientRect();
      const r = li.getBoundingClientRect();
      return r.bottom <= box.bottom + 1 && r.top >= box.top - 1;
    }), "the newest message is in view");
    await page.click("#messages-more");
    await page.locator("#messages li.user", { hasText: /question 1$/ }).waitFor();
    assert.equal(await page.locator("#messages li").count(), 56);
    assert.equal(await page.isVisible("#messages-more"), false);
    assert.match((await page.locator("#messages li").first().textContent()) ?? "", /question 1$/, "oldest first");

    // Search across conversations, with highlighted words; a hit opens its session around it.
    await page.click("#new-session");
    await page.fill("#search-query", "question 2");
    await page.press("#search-query", "Enter");
    const hit = page.locator("#search-results li", { hasText: /question 2$/ });
    await hit.waitFor();
    assert.equal(await hit.locator("mark").first().textContent().then((t) => (t ?? "").toLowerCase()), "question");
    assert.equal(await page.isVisible("#sessions"), false, "the results take the sidebar's place");
    await page.screenshot({ path: join(artifacts, "search.png") });
    await hit.click();
    const focused = page.locator("#messages li.focused");
    await focused.waitFor();
    assert.match((await focused.textContent()) ?? "", /question 2$/);
    assert.equal(await page.locator("#session-title").textContent(), "Clock questions");
    await page.click("#search-clear");
    await page.locator("#sessions").waitFor();
    // A query nothing matches.
    await page.fill("#search-query", "zeppelin");
    await page.press("#search-query", "Enter");
    await page.locator("#search-empty:not([hidden])").waitFor();
  });

  test("tool calls in the conversation, memories, safe Markdown, and a reply that streams while another chat is open", async () => {
    const page = await newPage();
    await signIn(page, "tools@example.com", "Laptop");
    await storeApiKey(page);

    // remember: the call, its result and the reply, as they stream.
    await chat(page, "remember that my cat is Tom", "Got it. I will remember: My cat is Tom.");
    const call = page.locator("#messages li.tool-call", { hasText: "remember" });
    assert.match((await call.textContent()) ?? "", /"fact":"My cat is Tom"/);
    await page.locator("#messages li.tool-result", { hasText: "remember" }).waitFor();
    await chat(page, "what time is it", /^It is /);
    await page.locator("#messages li.tool-call", { hasText: "current_time" }).waitFor();
    await page.screenshot({ path: join(artifacts, "chat-tools.png") });
    const chatA = (await page.locator("#sessions li.selected").getAttribute("data-id")) ?? "";
    assert.ok(chatA);

    // Memories: listed, then forgotten; recall then finds nothing.
    await page.click('#nav [data-screen="memories"]');
    const memory = page.locator("#memories li", { hasText: "My cat is Tom" });
    await memory.waitFor();
    await page.screenshot({ path: join(artifacts, "memories.png") });
    await memory.locator("button.forget").click();
    await memory.waitFor({ state: "detached" });
    await page.locator("#memories-empty:not([hidden])").waitFor();
    await page.reload();
    await page.click('#nav [data-screen="memories"]');
    await page.locator("#memories-empty:not([hidden])").waitFor();
    await page.click('#nav [data-screen="chat"]');
    await page.locator(`#sessions li[data-id="${chatA}"]`).click();
    await page.locator("#messages li.tool-call", { hasText: "remember" }).waitFor();
    await chat(page, "what do you remember about my cat", "I don't remember anything about that yet.");
    await page.locator("#messages li.tool-call", { hasText: "recall" }).waitFor();

    // Markdown is rendered, HTML in a reply is shown as text and never runs.
    const hostile = 'Look: **bold**, `code`, [a link](https://example.com/) [bad](javascript:window.__injected=2) <img src=x onerror="window.__injected=1">';
    await chat(page, hostile, "You said:");
    const reply = page.locator("#messages li.model").last();
    assert.ok(await endInView(reply), "a conversation longer than the screen follows the reply to its end");
    assert.ok(await page.locator("#messages").evaluate((box) => box.scrollHeight > box.clientHeight), "the conversation is longer than the screen");
    assert.equal(await reply.locator("strong").first().textContent(), "bold");
    assert.equal(await reply.locator("code").first().textContent(), "code");
    assert.equal(await reply.locator("a").count(), 1, "only the https link is a link");
    assert.equal(await reply.locator("a").getAttribute("href"), "https://example.com/");
    assert.equal(await reply.locator("a").getAttribute("rel"), "noopener noreferrer");
    assert.match((await reply.textContent()) ?? "", /<img src=x onerror="window.__injected=1">/);
    assert.match((await reply.textContent()) ?? "", /\[bad\]\(javascript:window.__injected=2\)/);
    assert.equal(await page.locator("#messages img").count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { __injected?: number }).__injected), undefined);
    // The same after reading the history back from the server.
    await page.locator(`#sessions li[data-id="${chatA}"]`).click();
    await page.locator("#messages li.model strong", { hasText: "bold" }).waitFor();
    assert.equal(await page.locator("#messages img").count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { __injected?: number }).__injected), undefined);
    await page.screenshot({ path: join(artifacts, "chat-markdown.png") });

    // A reply streams in chat B while the user opens chat A: it does not show in A, and it is
    // there, complete and in view, on going back to B.
    await page.click("#new-session");
    await page.locator("#session-title", { hasText: "New chat" }).waitFor();
    await page.locator("#sessions li.selected", { hasText: "New chat" }).waitFor();
    const chatB = (await page.locator("#sessions li.selected").getAttribute("data-id")) ?? "";
    assert.ok(chatB && chatB !== chatA);
    // The local model quotes the message, so a long one makes a long reply (a word every 40 ms).
    const story = "tell me a long story about the lighthouse keeper who counted every ship that passed his island for forty years and wrote their names in a blue book";
    await page.fill("#message", story);
    await page.click("#send");
    await page.waitForFunction(() => (document.querySelector('#messages li.model[data-state="streaming"]')?.textContent ?? "").split(" ").length >= 3);
    await page.locator(`#sessions li[data-id="${chatA}"]`).click();
    await page.locator("#messages li.model strong", { hasText: "bold" }).waitFor();
    await page.locator("#streaming-elsewhere:not([hidden])").waitFor();
    const modelsInA = await page.locator("#messages li.model").count();
    await page.waitForTimeout(600);
    assert.equal(await page.locator("#messages li.model").count(), modelsInA, "nothing of B's reply arrives in A");
    assert.equal(await page.locator("#messages li", { hasText: "tell me a long story" }).count(), 0);
    assert.equal(await page.locator('#messages li[data-state="streaming"]').count(), 0);
    assert.equal(await page.isVisible("#cancel"), false, "Stop belongs to B");
    await page.screenshot({ path: join(artifacts, "chat-streaming-elsewhere.png") });
    await page.click("#streaming-elsewhere");
    await page.locator(`#sessions li.selected[data-id="${chatB}"]`).waitFor();
    const replyB = page.locator('#messages li.model[data-state="done"]', { hasText: `You said: "${story}"` });
    await replyB.waitFor({ timeout: 60_000 });
    assert.equal(await page.locator("#messages li.user", { hasText: "tell me a long story" }).count(), 1);
    assert.equal(await page.locator("#messages li.model").count(), 1);
    assert.ok(await endInView(replyB), "the end of the reply is in view");
    // What the server kept for B is what the screen showed.
    await page.locator(`#sessions li[data-id="${chatB}"]`).click();
    await page.locator('#messages li.model[data-state="done"]', { hasText: `You said: "${story}"` }).waitFor();
    assert.equal(await page.locator("#messages li.user").count(), 1);
    await page.locator(`#sessions li[data-id="${chatA}"]`).click();
    await page.locator("#messages li.model strong", { hasText: "bold" }).waitFor();
    assert.equal(await page.locator("#messages li", { hasText: "tell me a long story" }).count(), 0);
  });

  test("usage and budget: this month's calls, a budget that stops chatting until it is removed, and the activity it leaves", async () => {
    const page = await newPage();
    await signIn(page, "budget@example.com", "Laptop");
    await storeApiKey(page);
    await chat(page, "hello budget", 'You said: "hello budget"');

    await page.click('#nav [data-screen="usage"]');
    await page.locator('#screen-usage[data-loaded="true"]').waitFor();
    await page.locator("#usage-rows tr").first().waitFor();
    const requests = Number(((await page.textContent("#usage-total-requests")) ?? "").replace(/,/g, ""));
    const tokens = Number(((await page.textContent("#usage-total-tokens")) ?? "").replace(/,/g, ""));
    assert.ok(requests >= 1, `requests: ${requests}`);
    assert.ok(tokens > 0, `tokens: ${tokens}`);
    assert.equal(await page.textContent("#budget-limit"), "no budget");
    console.log(`usage after one exchange: ${requests} model calls, ${tokens} tokens`);

    await page.fill("#budget-input", "0");
    await page.click("#budget-save");
    await page.locator("#budget-error").filter({ hasText: /\S/ }).waitFor();
    console.log(`a budget of 0: ${await page.textContent("#budget-error")}`);
    await page.fill("#budget-input", "1");
    await page.click("#budget-save");
    await page.locator("#budget-exhausted:not([hidden])").waitFor();
    assert.equal(await page.textContent("#budget-limit"), "1 tokens a month");
    assert.equal(await page.textContent("#budget-error"), "");
    await page.screenshot({ path: join(artifacts, "usage.png") });

    await page.click('#nav [data-screen="chat"]');
    await page.locator("#sessions li.selected").click();
    await page.locator("#messages li.model").first().waitFor();
    await page.fill("#message", "one more please");
    await page.click("#send");
    await page.locator("#chat-error").filter({ hasText: /budget/i }).waitFor();
    console.log(`sending with the budget spent: ${await page.locator("#chat-error").evaluate((p) => p.firstChild?.textContent ?? "")}`);

    await page.click('#nav [data-screen="usage"]');
    await page.locator("#budget-clear:not([hidden])").click();
    await page.locator("#budget-limit", { hasText: "no budget" }).waitFor();
    assert.equal(await page.isVisible("#budget-exhausted"), false);

    await page.click('#nav [data-screen="apikey"]');
    await page.locator("#audit li", { hasText: "Token budget cleared" }).waitFor();
    await page.locator("#audit li", { hasText: "Token budget set" }).first().waitFor();
    await page.locator("#audit li", { hasText: "API key stored" }).waitFor();
    await page.locator("#audit li", { hasText: "Signed in" }).waitFor();
    await page.screenshot({ path: join(artifacts, "api-key-activity.png") });
  });

  test("a page from an origin the server does not allow cannot call it", async () => {
    const page = await newPage();
    const refused: string[] = [];
    page.on("requestfailed", (r) => refused.push(r.url()));
    await page.goto(otherOrigin!.url);
    await page.locator("#screen-signin").waitFor();
    await page.click("#sign-in");
    await page.locator("#signin-error").filter({ hasText: /Cannot reach the server/ }).waitFor();
    assert.ok(refused.some((u) => u.endsWith("/assistd.auth.v1.AuthService/BeginLogin")), refused.join(", "));
    assert.equal(new URL(page.url()).origin, otherOrigin!.url, "no redirect to the provider");
  });
});

/**
 * A test CA and a leaf certificate for 127.0.0.1 and localhost signed by it, made with openssl
 * in `dir`; the leaf's files and the base64 SHA-256 of its public key (SPKI), which Chromium's
 * --ignore-certificate-errors-spki-list takes to trust it without touching any trust store.
 */
function testCertificates(dir: string): TlsFiles & { spki: string } {
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...ec, "-days", "2", "-subj", "/CN=assistd test CA", "-keyout", file("ca.key"), "-out", file("ca.pem"));
  openssl("req", ...ec, "-subj", "/CN=localhost", "-keyout", file("leaf.key"), "-out", file("leaf.csr"));
  writeFileSync(
    file("leaf.ext"),
    "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
  );
  openssl("x509", "-req", "-in", file("leaf.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial",
    "-days", "2", "-extfile", file("leaf.ext"), "-out", file("leaf.pem"));
  // The chain the server presents: the leaf, then the CA that signed it.
  writeFileSync(file("chain.pem"), readFileSync(file("leaf.pem"), "utf8") + readFileSync(file("ca.pem"), "utf8"));
  const leaf = new X509Certificate(readFileSync(file("leaf.pem")));
  const spki = createHash("sha256").update(leaf.publicKey.export({ type: "spki", format: "der" })).digest("base64");
  return { certFile: file("chain.pem"), keyFile: file("leaf.key"), spki };
}

/** What {@link watchTenStreams} saw. */
interface StreamsOutcome {
  /** Streams that delivered any state (the current one comes first) before the change. */
  opened: number;
  /** Streams that delivered the changed state. */
  updated: number;
}

const STREAMS = 10;

/**
 * Signs a new user in on `stack` in `page`, opens {@link STREAMS} WatchPreferences streams on
 * that page through the client package (besides the app's own), changes the timezone from
 * another browser context (its own connections, so the change never waits behind this page's
 * streams) and counts the streams that deliver the change within `waitMs`.
 */
async function watchTenStreams(browser: Browser, stack: Stack, email: string, waitMs: number): Promise<StreamsOutcome> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await signIn(page, email, "Streams", stack);
  await page.evaluate((count) => {
    const w = window as unknown as { streams: { seen: number[]; updated: boolean[]; stop: AbortController } };
    w.streams = { seen: Array<number>(count).fill(0), updated: Array<boolean>(count).fill(false), stop: new AbortController() };
    for (let i = 0; i < count; i++) {
      void window.assistd!.watchPreferences(window.assistd!.client, {
        signal: w.streams.stop.signal,
        onPreferences: (p) => {
          w.streams.seen[i]! += 1;
          if (p.timezone === "Asia/Tokyo") w.streams.updated[i] = true;
        },
      }).done.catch(() => undefined);
    }
  }, STREAMS);
  const count = (what: "seen" | "updated") =>
    page.evaluate((key) => {
      const w = window as unknown as { streams: { seen: number[]; updated: boolean[] } };
      return key === "seen" ? w.streams.seen.filter((n) => n > 0).length : w.streams.updated.filter(Boolean).length;
    }, what);
  const until = async (what: "seen" | "updated", ms: number) => {
    const deadline = Date.now() + ms;
    while ((await count(what)) < STREAMS && Date.now() < deadline) await page.waitForTimeout(100);
    return await count(what);
  };
  const opened = await until("seen", waitMs);

  // The change, made by the same user from another context: a tab of its own, same tokens.
  const tokens = await page.evaluate(() => sessionStorage.getItem("assistd.tokens"));
  const other = await browser.newContext();
  contexts.push(other);
  const changer = await other.newPage();
  await changer.goto(stack.url);
  await changer.evaluate((t) => sessionStorage.setItem("assistd.tokens", t!), tokens);
  await changer.evaluate(() =>
    window.assistd!.client.preferences.updatePreferences({ preferences: { timezone: "Asia/Tokyo" }, updateMask: { paths: ["timezone"] } }),
  );
  const updated = await until("updated", waitMs);
  await page.evaluate(() => (window as unknown as { streams: { stop: AbortController } }).streams.stop.abort());
  await other.close();
  await context.close();
  return { opened, updated };
}

describe("HTTP/2 over TLS", () => {
  let tlsStack: Stack | undefined;
  let tlsBrowser: Browser | undefined;
  let certDir: string | undefined;

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), "assistd-web-tls-"));
    const certs = testCertificates(certDir);
    tlsStack = await startStack("assistd-dev-tls", [], certs);
    // A browser of its own: it trusts the test leaf (by its public key) and nothing else new.
    tlsBrowser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        `--ignore-certificate-errors-spki-list=${certs.spki}`,
      ],
    });
  });

  after(async () => {
    await tlsBrowser?.close().catch(() => undefined);
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  test("every API call goes over h2, and 10 WatchPreferences streams on one page all deliver a change", async () => {
    const page = await newPageIn(tlsBrowser!);
    await signIn(page, "h2@example.com", "Laptop", tlsStack);
    await page.evaluate(async () => {
      await window.assistd!.client.preferences.getPreferences({});
      await window.assistd!.client.auth.getCurrentUser({});
    });
    const calls = await page.evaluate(
      (api) =>
        performance
          .getEntriesByType("resource")
          .filter((e) => e.name.startsWith(api))
          .map((e) => ({ url: e.name, protocol: (e as PerformanceResourceTiming).nextHopProtocol })),
      tlsStack!.apiUrl,
    );
    console.log(`API calls over TLS and their protocols: ${calls.map((c) => `${new URL(c.url).pathname.split("/").pop()} ${c.protocol || "(hidden)"}`).join(", ")}`);
    assert.ok(calls.length >= 2, `the page made API calls: ${JSON.stringify(calls)}`);
    for (const call of calls) assert.equal(call.protocol, "h2", `${call.url} went over h2`);

    const overTls = await watchTenStreams(tlsBrowser!, tlsStack!, "streams-h2@example.com", 20_000);
    console.log(`HTTP/2 over TLS: ${overTls.opened} of ${STREAMS} streams opened, ${overTls.updated} of ${STREAMS} delivered the change`);
    assert.deepEqual(overTls, { opened: STREAMS, updated: STREAMS });
  });

  test("control: the same 10 streams over plaintext HTTP/1.1 (printed, not asserted)", async () => {
    const page = await newPage();
    await signIn(page, "h1@example.com", "Laptop");
    await page.evaluate(() => window.assistd!.client.preferences.getPreferences({}));
    const protocols = await page.evaluate(
      (api) =>
        [...new Set(performance
          .getEntriesByType("resource")
          .filter((e) => e.name.startsWith(api))
          .map((e) => (e as PerformanceResourceTiming).nextHopProtocol))],
      main!.apiUrl,
    );
    const plain = await watchTenStreams(browser!, main!, "streams-h1@example.com", 5_000);
    console.log(
      `control, plaintext (protocols seen: ${protocols.join(", ")}): ${plain.opened} of ${STREAMS} streams opened, ` +
        `${plain.updated} of ${STREAMS} delivered the change within 5 s (a browser keeps at most 6 HTTP/1.1 connections per host)`,
    );
  });
});
