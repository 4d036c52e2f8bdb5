import { Code, ConnectError } from "@connectrpc/connect";
import type { Preferences } from "../gen/assistd/preferences/v1/preferences_pb.js";
import type { AssistdClient } from "./client.js";
import { Reason, errorReason, retryDelayMs } from "./errors.js";

export interface BackoffOptions {
  /** First delay before reconnecting, ms. Default 250. */
  initialMs?: number;
  /** Largest delay, ms. Default 30000. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  multiplier?: number;
  /** Source of randomness for the jitter, [0, 1). Default Math.random. */
  random?: () => number;
  /**
   * How long a stream must stay open before its failure counts as a fresh start: the backoff
   * starts from the first step again. A stream that opens and fails sooner keeps growing the
   * delay, so a server that accepts and then drops the stream is not hammered. Default 10000.
   */
  healthyAfterMs?: number;
}

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential, capped at `maxMs`, with
 * "equal jitter" (a random value between half the step and the full step) so that many clients
 * dropped together by a restart do not come back in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const mult = options.multiplier ?? 2;
  const random = options.random ?? Math.random;
  const step = Math.min(max, initial * Math.pow(mult, Math.max(0, attempt)));
  return Math.round(step / 2 + random() * (step / 2));
}

export type WatchState = "connecting" | "open" | "waiting" | "stopped";

export interface WatchPreferencesOptions {
  /** Each new state of the user's preferences; repeats after a reconnect are skipped (same etag). */
  onPreferences: (preferences: Preferences) => void;
  /** Stops the watch. Signing out (or the session ending) stops it too. */
  signal?: AbortSignal;
  /**
   * Each error that led to a reconnect, or that stopped the watch. `delayMs` is the wait before
   * the next attempt (0: at once, after a refresh); undefined when the watch stops.
   */
  onError?: (error: ConnectError, willRetry: boolean, delayMs?: number) => void;
  onStateChange?: (state: WatchState) => void;
  backoff?: BackoffOptions;
}

export interface PreferencesWatch {
  stop(): void;
  /** Settles when the watch stops: resolves on abort/sign-out, rejects on an error it cannot retry. */
  done: Promise<void>;
}

/** Codes after which a dropped watch is opened again. */
const RETRYABLE: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Canceled,
]);

/**
 * Keeps WatchPreferences open: delivers the current preferences and every change, reopens the
 * stream with capped, jittered backoff after UNAVAILABLE or a dropped connection (e.g. a server
 * restart) and resumes from the state the server sends first. The backoff starts over only once
 * a stream has stayed open for `healthyAfterMs`; a stream that opens and fails again keeps
 * growing it. An access token that expired on an open stream is refreshed and the stream
 * reopened at once — once; should that stream fail the same way before it is healthy, the
 * reopen waits its backoff like any other. Stops on abort, sign-out or a session that ended.
 */
export function watchPreferences(
  client: Pick<AssistdClient, "preferences" | "session">,
  options: WatchPreferencesOptions): PreferencesWatch {
  const controller = new AbortController();
  const stop = () => controller.abort();
  options.signal?.addEventListener("abort", stop, { once: true });
  if (options.signal?.aborted) stop();
  const unsubscribe = client.session.onSessionEnded(stop);
  const setState = (s: WatchState) => options.onStateChange?.(s);
  const signal = controller.signal;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });

  const healthyAfterMs = options.backoff?.healthyAfterMs ?? 10_000;

  const run = async () => {
    let attempt = 0;
    let lastEtag: string | undefined;
    // Whether the last reopen came straight after a refresh, with no healthy stream since.
    let reopenedAfterRefresh = false;
    while (!signal.aborted) {
      setState("connecting");
      let openedAt: number | undefined;
      let err: ConnectError;
      try {
        for await (const event of client.preferences.watchPreferences({}, { signal })) {
          if (openedAt === undefined) {
            openedAt = performance.now();
            setState("open");
          }
          const prefs = event.preferences;
          if (!prefs || prefs.etag === lastEtag) continue;
          lastEtag = prefs.etag;
          options.onPreferences(prefs);
        }
        // The server ended the stream cleanly (e.g. shutting down): open it again.
        err = new ConnectError("the watch stream ended", Code.Unavailable);
      } catch (e) {
        err = ConnectError.from(e);
      }
      if (signal.aborted) break;
      if (openedAt !== undefined && performance.now() - openedAt >= healthyAfterMs) {
        attempt = 0;
        reopenedAfterRefresh = false;
      }
      if (err.code === Code.Unauthenticated) {
        const tokens = await client.session.tokens();
        if (errorReason(err) === Reason.ACCESS_TOKEN_EXPIRED && tokens) {
          let refreshed = false;
          try {
            await client.session.refresh(tokens.accessToken);
            refreshed = true;
          } catch (refreshError) {
            err = ConnectError.from(refreshError);
          }
          if (refreshed) {
            const delay = reopenedAfterRefresh ? backoffDelay(attempt++, options.backoff) : 0;
            reopenedAfterRefresh = true;
            options.onError?.(err, true, delay);
            if (delay > 0) {
              setState("waiting");
              await sleep(delay);
            }
            continue;
          }
        }
        await client.session.endIfFinal(err);
        if (signal.aborted || !(await client.session.signedIn())) break;
      }
      if (!RETRYABLE.has(err.code)) {
        options.onError?.(err, false, undefined);
        throw err;
      }
      const delay = Math.max(retryDelayMs(err) ?? 0, backoffDelay(attempt, options.backoff));
      options.onError?.(err, true, delay);
      setState("waiting");
      await sleep(delay);
      attempt += 1;
    }
  };

  const done = run().finally(() => {
    unsubscribe();
    options.signal?.removeEventListener("abort", stop);
    setState("stopped");
  });
  return { stop, done };
}
