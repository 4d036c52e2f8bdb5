import type { Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Interceptor, StreamRequest, StreamResponse, Transport, UnaryRequest } from "@connectrpc/connect";
import { AuthService } from "../gen/assistd/auth/v1/auth_pb.js";
import { Reason, errorReason } from "./errors.js";
import { memoryTokenStore, tokensFromProto } from "./tokens.js";
import type { TokenStore, Tokens } from "./tokens.js";

/** Why a session ended. "SIGNED_OUT" is a SignOut through this client; the others are reasons. */
export type SessionEndReason =
  | "SIGNED_OUT"
  | typeof Reason.SESSION_REVOKED
  | typeof Reason.REFRESH_TOKEN_REUSED
  | typeof Reason.REFRESH_TOKEN_INVALID
  | typeof Reason.ACCOUNT_NOT_FOUND;

export interface SessionEndedEvent {
  reason: SessionEndReason;
  /** The error that revealed it; undefined for SIGNED_OUT. */
  error: ConnectError | undefined;
}

/** Server reasons after which the stored tokens can never work again. */
const ENDING_REASONS: ReadonlySet<string> = new Set([
  Reason.SESSION_REVOKED,
  Reason.REFRESH_TOKEN_REUSED,
  Reason.REFRESH_TOKEN_INVALID,
  Reason.ACCOUNT_NOT_FOUND,
]);

export interface SessionOptions {
  store?: TokenStore;
  /** Called once each time the session ends (sign-out, revocation, refresh token reuse…). */
  onSessionEnded?: (event: SessionEndedEvent) => void;
  /** Called after every successful Refresh (e.g. for metrics). */
  onRefresh?: (tokens: Tokens) => void;
  /**
   * How long a Refresh may take before it fails with DEADLINE_EXCEEDED (the tokens are kept, so
   * a later call tries again). Default 15000 ms.
   */
  refreshTimeoutMs?: number;
}

/** The default of SessionOptions.refreshTimeoutMs. */
export const DEFAULT_REFRESH_TIMEOUT_MS = 15_000;

/**
 * The signed-in session of one client: its token store, a single-flight Refresh and the
 * interceptor that attaches the access token and refreshes it when the server says it expired.
 */
export class AssistdSession {
  readonly store: TokenStore;
  private readonly listeners = new Set<(event: SessionEndedEvent) => void>();
  private readonly onRefresh: ((tokens: Tokens) => void) | undefined;
  private inflight: Promise<Tokens> | undefined;
  private refreshTransport: Transport | undefined;
  private refreshCountValue = 0;
  private readonly refreshTimeoutMs: number;
  /**
   * Changes whenever the stored session is replaced or ended (sign-in, sign-out, revocation), so
   * that a Refresh answered afterwards can tell that its result belongs to a session gone by.
   */
  private generation = 0;

  constructor(options: SessionOptions = {}) {
    this.store = options.store ?? memoryTokenStore();
    this.onRefresh = options.onRefresh;
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? DEFAULT_REFRESH_TIMEOUT_MS;
    if (options.onSessionEnded) this.listeners.add(options.onSessionEnded);
  }

  /** Refresh calls this session has made (successful or not). */
  get refreshCount(): number {
    return this.refreshCountValue;
  }

  /** Registers a listener for the end of the session; returns its removal. */
  onSessionEnded(listener: (event: SessionEndedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sets the transport Refresh goes through (one without this session's interceptor). */
  bindTransport(transport: Transport): void {
    this.refreshTransport = transport;
  }

  async tokens(): Promise<Tokens | undefined> {
    return await this.store.get();
  }

  async signedIn(): Promise<boolean> {
    return (await this.store.get()) !== undefined;
  }

  /** Stores the tokens of a new sign-in. */
  async setTokens(tokens: Tokens): Promise<void> {
    this.generation += 1;
    this.inflight = undefined; // a Refresh of the session before is no one's to wait for
    await this.store.set(tokens);
  }

  /**
   * Exchanges the refresh token once for everyone waiting. `staleAccessToken` is the access
   * token a failed call used: when the store already holds a newer one (another call refreshed
   * meanwhile), that one is returned and no Refresh is made.
   */
  async refresh(staleAccessToken?: string): Promise<Tokens> {
    if (this.inflight) return this.inflight;
    const current = await this.store.get();
    if (!current) {
      throw new ConnectError("not signed in", Code.Unauthenticated);
    }
    if (staleAccessToken !== undefined && current.accessToken !== staleAccessToken) {
      return current;
    }
    if (this.inflight) return this.inflight;
    const inflight: Promise<Tokens> = this.doRefresh(current).finally(() => {
      if (this.inflight === inflight) this.inflight = undefined;
    });
    this.inflight = inflight;
    return inflight;
  }

  private async doRefresh(current: Tokens): Promise<Tokens> {
    if (!this.refreshTransport) throw new Error("the session has no transport");
    const auth = createClient(AuthService, this.refreshTransport);
    const generation = this.generation;
    this.refreshCountValue += 1;
    let res;
    try {
      res = await auth.refresh({ refreshToken: current.refreshToken }, { timeoutMs: this.refreshTimeoutMs });
    } catch (e) {
      let err = ConnectError.from(e);
      if (err.code === Code.DeadlineExceeded) {
        err = new ConnectError(
          `Refresh got no answer within ${this.refreshTimeoutMs} ms; the session is kept and the next call tries again`,
          Code.DeadlineExceeded,
          undefined,
          undefined,
          err,
        );
      }
      // After a sign-out or a new sign-in, a failed Refresh of the old session ends nothing.
      if (generation === this.generation) await this.endIfFinal(err);
      throw err;
    }
    const next = tokensFromProto(res.tokens);
    if (generation !== this.generation) {
      // Signed out (or signed in anew) while the Refresh was on its way: its tokens belong to
      // a session the app has left, and storing them would sign it back in.
      const signedIn = (await this.store.get()) !== undefined;
      throw new ConnectError(
        signedIn
          ? "a new sign-in replaced the session while its access token was being refreshed"
          : "signed out while the access token was being refreshed; the new tokens were discarded",
        Code.Unauthenticated,
      );
    }
    await this.store.set(next);
    this.onRefresh?.(next);
    return next;
  }

  /** Clears the tokens and tells the listeners, when `err` means the session cannot go on. */
  async endIfFinal(err: ConnectError): Promise<boolean> {
    if (err.code !== Code.Unauthenticated) return false;
    const reason = errorReason(err);
    if (reason === undefined || !ENDING_REASONS.has(reason)) return false;
    await this.end(reason as SessionEndReason, err);
    return true;
  }

  /** Forgets the tokens and tells the listeners (once per signed-in session). */
  async end(reason: SessionEndReason, error?: ConnectError): Promise<void> {
    this.generation += 1;
    this.inflight = undefined;
    const had = await this.store.get();
    await this.store.clear();
    if (!had) return;
    const event: SessionEndedEvent = { reason, error };
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not break the call that noticed the end.
      }
    }
  }

  /** True when `err` says the access token `tokens` carried has expired, and a retry may help. */
  private expired(err: ConnectError, tokens: Tokens | undefined, signal: AbortSignal): tokens is Tokens {
    return (
      tokens !== undefined &&
      err.code === Code.Unauthenticated &&
      errorReason(err) === Reason.ACCESS_TOKEN_EXPIRED &&
      !signal.aborted
    );
  }

  /** Ends the session on a final error, unless the tokens that met it were replaced meanwhile. */
  private async endIfFinalFor(err: ConnectError, used: Tokens | undefined): Promise<void> {
    const current = await this.store.get();
    if (used && current && current.accessToken !== used.accessToken) return;
    await this.endIfFinal(err);
  }

  /**
   * The interceptor: sends `authorization: Bearer <access>` when signed in; on
   * UNAUTHENTICATED/ACCESS_TOKEN_EXPIRED refreshes (single flight) and sends the call again once
   * — a unary call, or a server stream refused before its first message; refreshes before a
   * streaming call whose token is past its expiry time by the client's clock; on a reason that
   * ends the session, clears it and tells the listeners.
   */
  readonly interceptor: Interceptor = (next) => async (req) => {
    let tokens = await this.store.get();
    // Refresh first when the client's clock says the token has expired: it saves a round trip.
    // (The server has the last word: its ACCESS_TOKEN_EXPIRED is handled below.)
    if (tokens && req.stream && tokens.accessTokenExpiresAt > 0 && Date.now() >= tokens.accessTokenExpiresAt) {
      tokens = await this.refresh(tokens.accessToken);
    }
    if (!req.stream) return await this.unary(next, req, tokens);
    if (req.method.methodKind === "server_streaming") {
      return await this.serverStream(next as (req: StreamRequest) => Promise<StreamResponse>, req, tokens);
    }
    // Client and bidi streams cannot be sent again: one attempt.
    if (tokens) req.header.set("authorization", `Bearer ${tokens.accessToken}`);
    try {
      return await next(req);
    } catch (e) {
      const err = ConnectError.from(e);
      await this.endIfFinalFor(err, tokens);
      throw err;
    }
  };

  private async unary(
    next: (req: UnaryRequest) => Promise<unknown>,
    req: UnaryRequest,
    tokens: Tokens | undefined,
  ): Promise<never> {
    if (tokens) req.header.set("authorization", `Bearer ${tokens.accessToken}`);
    let used = tokens;
    try {
      try {
        return (await next(req)) as never;
      } catch (e) {
        const err = ConnectError.from(e);
        if (!this.expired(err, tokens, req.signal)) throw err;
        used = await this.refresh(tokens.accessToken);
        req.header.set("authorization", `Bearer ${used.accessToken}`);
        return (await next(req)) as never;
      }
    } catch (e) {
      const err = ConnectError.from(e);
      await this.endIfFinalFor(err, used);
      throw err;
    }
  }

  /**
   * A server stream: opened once more with a refreshed token when the server refuses it with
   * ACCESS_TOKEN_EXPIRED before any message arrived — in the response headers, or as the first
   * thing read from the body. After a message, an error is the caller's: the stream has begun.
   */
  private async serverStream(
    next: (req: StreamRequest) => Promise<StreamResponse>,
    req: StreamRequest,
    tokens: Tokens | undefined,
  ): Promise<StreamResponse> {
    // The one request message, kept so that the call can be sent again.
    const input: Message[] = [];
    for await (const m of req.message) input.push(m);
    let used = tokens;
    let retried = false;
    const open = (t: Tokens | undefined) => {
      if (t) req.header.set("authorization", `Bearer ${t.accessToken}`);
      return next({ ...req, message: replay(input) });
    };
    // Refreshes and opens the stream again, once, when `err` is an expired token; else throws.
    const retryOrThrow = async (e: unknown): Promise<StreamResponse> => {
      const err = ConnectError.from(e);
      try {
        if (retried || !this.expired(err, tokens, req.signal)) throw err;
        retried = true;
        used = await this.refresh(tokens.accessToken);
        return await open(used);
      } catch (e2) {
        const err2 = ConnectError.from(e2);
        await this.endIfFinalFor(err2, used);
        throw err2;
      }
    };
    let res: StreamResponse;
    try {
      res = await open(tokens);
    } catch (e) {
      res = await retryOrThrow(e);
    }
    const first = res;
    const session = this;
    async function* messages() {
      const it = first.message[Symbol.asyncIterator]();
      let head: IteratorResult<unknown>;
      try {
        head = await it.next();
      } catch (e) {
        const again = await retryOrThrow(e);
        try {
          yield* again.message;
        } catch (e2) {
          const err = ConnectError.from(e2);
          await session.endIfFinalFor(err, used);
          throw err;
        }
        again.trailer.forEach((value, key) => first.trailer.set(key, value));
        return;
      }
      if (head.done) return;
      yield head.value;
      try {
        yield* { [Symbol.asyncIterator]: () => it };
      } catch (e) {
        const err = ConnectError.from(e);
        await session.endIfFinalFor(err, used);
        throw err;
      }
    }
    return { ...first, message: messages() } as StreamResponse;
  }
}

async function* replay<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}
