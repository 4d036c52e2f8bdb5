// Real peers for the client tests: the npm oidc-provider wrapper from .ci/oidc-interop and a
// `assistd serve` process on a free loopback port with its own temporary data directory.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, createWriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Interceptor } from "@connectrpc/connect";
import { Agent } from "node:http";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  beginRedirectLogin,
  completeRedirectLogin,
  createAssistdClient,
  memoryTokenStore,
} from "../src/index.js";
import type { AssistdClient, LoginStateStore, SessionOptions } from "../src/index.js";

// dist/test/harness.js → the repository root.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const interopDir = join(repoRoot, ".ci/oidc-interop");
export const redirectUri = "http://127.0.0.1:8080/auth/callback";
const clientId = "assistd-ts-client";
const clientSecret = `ts-client-secret-${process.pid}`;

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export async function freePort(): Promise<number> {
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

export class Provider {
  private constructor(
    readonly issuer: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(logFile: string): Promise<Provider> {
    const child = spawn(process.execPath, [join(interopDir, "provider.mjs")], {
      env: {
        ...process.env,
        OIDC_PORT: "0",
        OIDC_CLIENT_ID: clientId,
        OIDC_CLIENT_SECRET: clientSecret,
        OIDC_REDIRECT_URI: redirectUri,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.stderr!.pipe(createWriteStream(logFile));
    const issuer = await new Promise<string>((ok, fail) => {
      let out = "";
      const timer = setTimeout(() => fail(new Error("the OpenID provider did not start in 20 s")), 20_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const m = /^OIDC_ISSUER=(\S+)$/m.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          ok(m[1]);
        }
      });
      child.once("exit", (code) => fail(new Error(`the OpenID provider exited (${code})`)));
    });
    return new Provider(issuer, child);
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}

export class Server {
  readonly baseUrl: string;
  private child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    readonly dataDir: string,
    private readonly issuer: string,
    private readonly logFile: string,
    private readonly extraEnv: Record<string, string> = {},
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    const bin = process.env.SERVER_BIN ?? join(repoRoot, "target/debug/assistd");
    // Only the configuration given here: inherited ASSISTD_* variables would change the server.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("ASSISTD_") && k !== "DATABASE_URL" && k !== "RUST_LOG"),
    );
    const env: NodeJS.ProcessEnv = {
      ...inherited,
      ASSISTD_DATA_DIR: this.dataDir,
      ASSISTD_SERVER__LISTEN: `127.0.0.1:${this.port}`,
      ASSISTD_SERVER__SHUTDOWN_GRACE: "2s",
      ASSISTD_LOG__FORMAT: "json",
      ASSISTD_SIGN_IN__ISSUER: this.issuer,
      ASSISTD_SIGN_IN__CLIENT_ID: clientId,
      ASSISTD_SIGN_IN__CLIENT_SECRET: clientSecret,
      ASSISTD_SIGN_IN__ALLOWED_REDIRECT_URIS: JSON.stringify([redirectUri]),
      ASSISTD_SIGN_IN__SIGN_IN_PER_IP_PER_MINUTE: "10000",
      ASSISTD_SIGN_IN__SIGN_IN_PER_USER_PER_MINUTE: "10000",
      ...this.extraEnv,
    };
    const child = spawn(bin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    const log = createWriteStream(this.logFile, { flags: "a" });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    this.child = child;
    // Ready once a call gets an answer from assistd itself (UNAUTHENTICATED without a token).
    const probe = createAssistdClient({ baseUrl: this.baseUrl, transport: nodeTransport });
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

/** connect-node's grpc-web transport over HTTP/1.1, as a Node app would use it. */
/// A fresh connection per call: assistd closes an HTTP/1.1 connection after answering a call
/// whose body it did not read (e.g. one refused for a missing token), and Node's keep-alive
/// pool would otherwise hand that closing socket to the next call (EPIPE).
export const nodeTransport = (init: { baseUrl: string; interceptors: Interceptor[] }) =>
  createGrpcWebTransport({ ...init, httpVersion: "1.1", nodeOptions: { agent: new Agent({ keepAlive: false }) } });

export function newClient(server: Server, session: SessionOptions = {}): AssistdClient {
  return createAssistdClient({
    baseUrl: server.baseUrl,
    session: { store: memoryTokenStore(), ...session },
    transport: nodeTransport,
  });
}

/** Follows the authorization URL like a browser (authorize.mjs) and returns the redirect URL. */
export async function authorize(authorizationUrl: string): Promise<string> {
  const child = spawn(process.execPath, [join(interopDir, "authorize.mjs"), authorizationUrl], {
    env: { ...process.env, OIDC_REDIRECT_URI: redirectUri },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((ok) => child.once("exit", ok));
  if (code !== 0) throw new Error(`authorize.mjs failed (${code}): ${err}`);
  return out.trim();
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

/** The whole redirect sign-in through the client's helpers, without a browser. */
export async function signIn(client: AssistdClient, deviceName = "node test") {
  const stateStore = memoryStateStore();
  const { authorizationUrl } = await beginRedirectLogin(client, { redirectUri, stateStore });
  const callbackUrl = await authorize(authorizationUrl);
  return await completeRedirectLogin(client, { callbackUrl, stateStore, deviceName });
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "assistd-ts-client-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * An ID token for this server's client id, obtained from the provider the way Google Identity
 * Services would hand one to a web page: code flow with PKCE and a nonce, code exchanged at the
 * token endpoint with the client's credentials.
 */
export async function googleStyleIdToken(issuer: string, nonce: string): Promise<string> {
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
    authorization_endpoint: string;
    token_endpoint: string;
  };
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: redirectUri,
    response_type: "code",
    scope: "openid email profile",
    state: randomBytes(12).toString("base64url"),
    nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  const callback = new URL(await authorize(url.href));
  const code = callback.searchParams.get("code");
  if (!code) throw new Error(`no code in ${callback.href}`);
  const res = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: verifier }),
  });
  const body = (await res.json()) as { id_token?: string };
  if (!res.ok || !body.id_token) throw new Error(`token endpoint: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.id_token;
}
