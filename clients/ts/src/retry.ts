import { ConnectError } from "@connectrpc/connect";
import type { Interceptor } from "@connectrpc/connect";

/**
 * Errors that mean, on an HTTP/1.1 connection, that the request never reached the server whole:
 * the connection was closed while the request was still being written (EPIPE). The server
 * cannot have acted on a message it did not read, so sending it again is safe even for calls
 * that change state. (On HTTP/2 the same error can come from another call's write on the shared
 * connection: it proves nothing about this call.)
 *
 * This happens over HTTP/1.1 when the server answers a call before reading its body (e.g. it
 * refuses a missing or expired token) and closes the connection: a client that is still
 * writing the body sees EPIPE instead of the answer.
 */
export function isUnsentRequestError(err: unknown): boolean {
  let cause: unknown = err instanceof ConnectError ? err.cause : err;
  for (let depth = 0; cause && depth < 5; depth += 1) {
    const code = (cause as { code?: unknown }).code;
    const syscall = (cause as { syscall?: unknown }).syscall;
    if (code === "EPIPE" || (code === "ECONNRESET" && syscall === "write")) return true;
    cause = (cause as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Sends a unary call again (up to `attempts` times in all, a few milliseconds apart) when it was
 * never sent whole. For HTTP/1.1 transports only: over HTTP/2 a write error on the shared
 * connection also fails calls that were sent whole, so the error does not prove this call unsent.
 * createAssistdClient installs it when its `httpVersion` is "1.1".
 */
export function retryUnsentRequests(attempts = 6): Interceptor {
  return (next) => async (req) => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await next(req);
      } catch (e) {
        if (req.stream || attempt >= attempts || req.signal.aborted || !isUnsentRequestError(e)) throw e;
      }
      await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 10));
    }
  };
}
