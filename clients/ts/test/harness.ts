// Real peers for the client tests: `assistd dev` (the real server with its embedded OpenID
// provider and local model) on loopback ports it binds itself, with a temporary data directory.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, createWriteStream } from "node:fs";
import { Agent } from "node:http";
import { connect, createServer as createNetServer } from "node:net";
import type { AddressInfo, Server as NetServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { randomUUID } from "node:crypto";
import {
  ApiKeyProvider,
  beginRedirectLogin,
  completeRedirectLogin,
  createAssistdClient,
  memoryTokenStore,
} from "../src/index.js";
import type { AssistdClient, LoginStateStore, SessionOptions, TransportInit } from "../src/index.js";

// dist/test/harness.js → the repository root.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
/** A redirect URI `assistd dev` allows without flags (Vite's default origin). */
export const redirectUri = "http://127.0.0.1:5173/auth/callback";
/** The client id `assistd dev` registers with its provider; ID tokens must be for it. */
export const devClientId = "assistd-dev-client";
/** An API key the local model accepts (its default key prefix is "dev-"). */
export const devApiKey = "dev-ts-client-key-0001";

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 25_000);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

/** The addresses `assistd dev` printed in its banner. */
interface Bound {
  server: URL;
  provider: URL;
  model: URL;
}

/** Reads the listeners' addresses from the banner `assistd dev` prints once it is bound. */
function readBanner(child: ChildProcess, logFile: string): Promise<Bound> {
  return new Promise((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`assistd dev printed no banner in 30 s; see ${logFile}`)), 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const server = /gRPC \/ grpc-web\s+(http:\/\/\S+)/.exec(out)?.[1];
      const provider = /OpenID provider\s+(http:\/\/\S+)/.exec(out)?.[1];
      const model = /local model\s+(http:\/\/\S+)/.exec(out)?.[1];
      if (server && provider && model) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        ok({ server: new URL(server), provider: new URL(provider), model: new URL(model) });
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`assistd dev exited (${code}); see ${logFile}`));
    });
  });
}

/**
 * `assistd dev` with its own data directory. The first start binds port 0 for all three
 * listeners and reads the real ports from the banner (nothing is picked and released first);
 * a restart binds the same ports again, as a restarted server would.
 */
export class DevServer {
  private child: ChildProcess | undefined;
  private bound: Bound | undefined;

  constructor(
    readonly dataDir: string,
    private readonly logFile: string,
    private readonly flags: string[] = [],
  ) {}

  /** The gRPC / grpc-web base URL, e.g. http://127.0.0.1:40123. */
  get baseUrl(): string {
    return this.addresses().server.origin;
  }

  /** The embedded OpenID provider's issuer. */
  get issuer(): string {
    return this.addresses().provider.origin;
  }

  private addresses(): Bound {
    if (!this.bound) throw new Error("the server has not started");
    return this.bound;
  }

  async start(): Promise<void> {
    const bin = process.env.SERVER_BIN ?? join(repoRoot, "target/debug/assistd");
    // `assistd dev` reads DATABASE_URL (PostgreSQL instead of SQLite) and RUST_LOG: leave them out.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => k !== "DATABASE_URL" && k !== "RUST_LOG" && !k.startsWith("ASSISTD_")),
    );
    const port = (u: URL | undefined) => `127.0.0.1:${u ? u.port : 0}`;
    const args = [
      "dev",
      "--data-dir", this.dataDir,
      "--listen", port(this.bound?.server),
      "--provider-listen", port(this.bound?.provider),
      "--model-listen", port(this.bound?.model),
      "--word-delay-ms", "5",
      ...this.flags,
    ];
    const child = spawn(bin, args, { env: { ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    const log = createWriteStream(this.logFile, { flags: "a" });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    this.child = child;
    this.bound = await readBanner(child, this.logFile);
    // The banner comes once the listener is bound; wait until a call gets assistd's own answer
    // (UNAUTHENTICATED without a token), which also proves grpc-web is served.
    const probe = createAssistdClient({ baseUrl: this.baseUrl, transport: nodeTransport() });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`assistd exited with ${child.exitCode}; see ${this.logFile}`);
      try {
        await probe.preferences.listThemes({}, { timeoutMs: 1000 });
        return;
      } catch (e) {
        if (ConnectError.from(e).code === Code.Unauthenticated) return;
      }
      if (Date.now() > deadline) throw new Error(`assistd did not answer in 30 s; see ${this.logFile}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
    this.child = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/** What went over the wire, per RPC name: requests sent and the codes they ended with. */
export class WireLog {
  readonly sent = new Map<string, number>();
  readonly answers: { method: string; code: Code | "OK" }[] = [];

  /** Innermost interceptor: it sees every request the transport sends, resends included. */
  readonly interceptor: Interceptor = (next) => async (req) => {
    this.sent.set(req.method.name, (this.sent.get(req.method.name) ?? 0) + 1);
    try {
      const res = await next(req);
      if (!req.stream) this.answers.push({ method: req.method.name, code: "OK" });
      return res;
    } catch (e) {
      this.answers.push({ method: req.method.name, code: ConnectError.from(e).code });
      throw e;
    }
  };

  count(method: string): number {
    return this.sent.get(method) ?? 0;
  }
}

let nextAddress = 1;

/**
 * connect-node's grpc-web transport over HTTP/1.1, as a Node app would use it, with a fresh
 * connection per call (so each call's fate is its own). Each client calls from its own
 * loopback address (127.0.0.2, 127.0.0.3 …), as separate devices do, so the server's
 * per-address sign-in limit counts each test's calls alone. `wire` sees every request sent.
 */
export function nodeTransport(wire?: WireLog) {
  nextAddress += 1;
  const localAddress = `127.0.${Math.floor(nextAddress / 250)}.${(nextAddress % 250) + 2}`;
  return (init: TransportInit) =>
    createGrpcWebTransport({
      baseUrl: init.baseUrl,
      interceptors: wire ? [...init.interceptors, wire.interceptor] : init.interceptors,
      httpVersion: "1.1",
      nodeOptions: { agent: new Agent({ keepAlive: false }), localAddress },
    });
}

export type TestClient = AssistdClient & { wire: WireLog };

export function newClient(
  server: { baseUrl: string },
  session: SessionOptions = {},
  interceptors: Interceptor[] = [],
): TestClient {
  const wire = new WireLog();
  const client = createAssistdClient({
    baseUrl: server.baseUrl,
    session: { store: memoryTokenStore(), ...session },
    transport: nodeTransport(wire),
    httpVersion: "1.1",
    interceptors,
  });
  return Object.assign(client, { wire });
}

/** Someone to sign in as on the development provider's page. */
export interface DevUser {
  email: string;
  name: string;
}

let nextUser = 0;

/** A user no other test signs in as (so per-account limits and data are the test's own). */
export function newUser(label = "user"): DevUser {
  nextUser += 1;
  return { email: `${label}-${nextUser}-${process.pid}@example.org`, name: `${label} ${nextUser}` };
}

const entities: Record<string, string> = { amp: "&", quot: '"', lt: "<", gt: ">", "#39": "'", "#x27": "'" };
const unescapeHtml = (s: string) => s.replace(/&(amp|quot|lt|gt|#39|#x27);/g, (_, e: string) => entities[e]!);

/**
 * Does what a person does in a browser: opens the authorization URL, fills the development
 * provider's login form with `user` and submits it; returns the URL it redirects to.
 */
export async function authorize(authorizationUrl: string, user: DevUser): Promise<string> {
  const page = await fetch(authorizationUrl);
  const html = await page.text();
  if (!page.ok) throw new Error(`the login page answered ${page.status}: ${html}`);
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    form.append(unescapeHtml(m[1]!), unescapeHtml(m[2]!));
  }
  const action = /<form method="post" action="([^"]*)">/.exec(html)?.[1];
  if (!action || !form.has("state")) throw new Error(`not the development login page: ${html.slice(0, 300)}`);
  form.set("email", user.email);
  form.set("name", user.name);
  const res = await fetch(new URL(unescapeHtml(action), authorizationUrl), {
    method: "POST",
    body: form,
    redirect: "manual",
  });
  const location = res.headers.get("location");
  if (res.status < 300 || res.status >= 400 || !location) {
    throw new Error(`the login form answered ${res.status}: ${await res.text()}`);
  }
  return location;
}

export function memoryStateStore(): LoginStateStore & { value: string | undefined } {
  const store = {
    value: undefined as string | undefined,
    save: (s: string) => {
      store.value = s;
    },
    load: () => store.value,
    clear: () => {
      store.value = undefined;
    },
  };
  return store;
}

/** The whole redirect sign-in through the client's helpers and the provider's login page. */
export async function signIn(client: AssistdClient, deviceName = "node test", user: DevUser = newUser()) {
  const stateStore = memoryStateStore();
  const { authorizationUrl } = await beginRedirectLogin(client, { redirectUri, stateStore });
  const callbackUrl = await authorize(authorizationUrl, user);
  return await completeRedirectLogin(client, { callbackUrl, stateStore, deviceName });
}

/** An ID token from the provider's `/dev/id-token`, as Google Identity Services hands one to a page. */
export async function devIdToken(issuer: string, user: DevUser, nonce: string): Promise<string> {
  const res = await fetch(`${issuer}/dev/id-token`, {
    method: "POST",
    body: new URLSearchParams({ email: user.email, name: user.name, nonce }),
  });
  const body = (await res.json()) as { id_token?: string };
  if (!res.ok || !body.id_token) throw new Error(`/dev/id-token: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.id_token;
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "assistd-ts-client-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export const sleep = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));

/** Stores the development API key and opens a chat session; returns the session id. */
export async function readyToChat(client: AssistdClient): Promise<string> {
  await client.apiKeys.setApiKey({ provider: ApiKeyProvider.GEMINI, apiKey: devApiKey });
  const res = await client.chat.createSession({ title: "test chat" });
  return res.session!.id;
}

/** Streams one message to the local model; returns the reply text put together from the deltas. */
export async function streamReply(client: AssistdClient, sessionId: string, text: string): Promise<string> {
  let reply = "";
  let completed = false;
  for await (const ev of client.chat.streamMessage({ sessionId, clientMessageId: randomUUID(), text })) {
    if (ev.event.case === "textDelta") reply += ev.event.value.text;
    if (ev.event.case === "completed") completed = true;
  }
  if (!completed) throw new Error("the stream ended without an ExchangeCompleted event");
  return reply;
}

/**
 * A TCP relay in front of the server that plays a bad network on command: `cut()` drops every
 * open connection (as a NAT timeout or a flaky mobile link does); while `stalled`, it accepts new
 * connections and never forwards them (a server that does not answer).
 */
export class FaultyLink {
  stalled = false;

  private constructor(
    private readonly listener: NetServer,
    private readonly open: Set<Socket>,
    readonly baseUrl: string,
  ) {}

  static async start(target: string): Promise<FaultyLink> {
    const { hostname, port } = new URL(target);
    const open = new Set<Socket>();
    let link: FaultyLink | undefined;
    const listener = createNetServer((client) => {
      open.add(client);
      client.once("close", () => open.delete(client));
      client.on("error", () => {});
      if (link?.stalled) return;
      const upstream = connect(Number(port), hostname);
      open.add(upstream);
      upstream.once("close", () => {
        open.delete(upstream);
        client.destroy();
      });
      upstream.on("error", () => client.destroy());
      client.once("close", () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((ok) => listener.listen(0, "127.0.0.1", ok));
    const addr = listener.address() as AddressInfo;
    link = new FaultyLink(listener, open, `http://127.0.0.1:${addr.port}`);
    return link;
  }

  /** Drops every connection open now; later ones go through. */
  cut(): void {
    for (const socket of [...this.open]) socket.destroy();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((ok) => this.listener.close(() => ok()));
  }
}
