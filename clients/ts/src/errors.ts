import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "../gen/google/rpc/error_details_pb.js";

/** ErrorInfo reasons the server sends that clients act on. Others may appear. */
export const Reason = {
  ACCESS_TOKEN_MISSING: "ACCESS_TOKEN_MISSING",
  ACCESS_TOKEN_EXPIRED: "ACCESS_TOKEN_EXPIRED",
  ACCESS_TOKEN_INVALID: "ACCESS_TOKEN_INVALID",
  SESSION_REVOKED: "SESSION_REVOKED",
  REFRESH_TOKEN_INVALID: "REFRESH_TOKEN_INVALID",
  REFRESH_TOKEN_REUSED: "REFRESH_TOKEN_REUSED",
  ACCOUNT_NOT_FOUND: "ACCOUNT_NOT_FOUND",
  LOGIN_STATE_INVALID: "LOGIN_STATE_INVALID",
  RATE_LIMITED: "RATE_LIMITED",
  API_KEY_MISSING: "API_KEY_MISSING",
  API_KEY_INVALID: "API_KEY_INVALID",
  ETAG_MISMATCH: "ETAG_MISMATCH",
} as const;

export interface ErrorInfoValue {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

export interface ResourceInfoValue {
  resourceType: string;
  resourceName: string;
  owner: string;
  description: string;
}

/** Everything a UI needs from a failed call, read from the status and its google.rpc details. */
export interface AssistdError {
  code: Code;
  /** The gRPC code's name, e.g. "InvalidArgument". */
  codeName: string;
  /** The server's message for people (without the "[code]" prefix). */
  message: string;
  /** ErrorInfo reason, e.g. "ACCESS_TOKEN_EXPIRED"; undefined when none was sent. */
  reason: string | undefined;
  errorInfo: ErrorInfoValue | undefined;
  /** BadRequest field violations: field path (e.g. "preferences.timezone") → descriptions. */
  fieldViolations: Record<string, string[]>;
  /** RetryInfo delay in milliseconds; undefined when the server sent none. */
  retryDelayMs: number | undefined;
  resourceInfo: ResourceInfoValue | undefined;
}

/** The first ErrorInfo of an error, if any. Accepts anything a call may throw. */
export function errorInfo(err: unknown): ErrorInfoValue | undefined {
  const info = ConnectError.from(err).findDetails(ErrorInfoSchema)[0];
  return info ? { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } } : undefined;
}

/** The ErrorInfo reason of an error, if any. */
export function errorReason(err: unknown): string | undefined {
  return errorInfo(err)?.reason;
}

/** BadRequest field violations grouped by field path, ready to show next to form fields. */
export function fieldViolations(err: unknown): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const bad of ConnectError.from(err).findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) {
      (out[v.field] ??= []).push(v.description);
    }
  }
  return out;
}

/** How long the server asks the client to wait before retrying, in milliseconds. */
export function retryDelayMs(err: unknown): number | undefined {
  const delay = ConnectError.from(err).findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay ? Number(delay.seconds) * 1000 + Math.ceil(delay.nanos / 1e6) : undefined;
}

/** The resource an error is about (e.g. for NOT_FOUND), if the server named one. */
export function resourceInfo(err: unknown): ResourceInfoValue | undefined {
  const r = ConnectError.from(err).findDetails(ResourceInfoSchema)[0];
  return r
    ? { resourceType: r.resourceType, resourceName: r.resourceName, owner: r.owner, description: r.description }
    : undefined;
}

/** Reads a thrown value into an AssistdError. */
export function describeError(err: unknown): AssistdError {
  const ce = ConnectError.from(err);
  const info = errorInfo(ce);
  return {
    code: ce.code,
    codeName: Code[ce.code] ?? String(ce.code),
    message: ce.rawMessage,
    reason: info?.reason,
    errorInfo: info,
    fieldViolations: fieldViolations(ce),
    retryDelayMs: retryDelayMs(ce),
    resourceInfo: resourceInfo(ce),
  };
}

/** True when the error is `code` (and, if given, carries ErrorInfo reason `reason`). */
export function isError(err: unknown, code: Code, reason?: string): boolean {
  const ce = ConnectError.from(err);
  return ce.code === code && (reason === undefined || errorReason(ce) === reason);
}
