import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { UserApiKeyService } from "../gen/assistd/apikey/v1/apikey_pb.js";
import { AuthService } from "../gen/assistd/auth/v1/auth_pb.js";
import { ChatService } from "../gen/assistd/chat/v1/chat_pb.js";
import { GmailService } from "../gen/assistd/gmail/v1/gmail_pb.js";
import { PreferencesService } from "../gen/assistd/preferences/v1/preferences_pb.js";
import { retryUnsentRequests } from "./retry.js";
import { AssistdSession } from "./session.js";
import type { SessionOptions } from "./session.js";

/** What a transport factory gets: the server URL and the interceptors to install. */
export interface TransportInit {
  baseUrl: string;
  interceptors: Interceptor[];
}

export interface AssistdClientOptions {
  /** The server, e.g. "https://api.example.com" (grpc-web on the gRPC port). */
  baseUrl: string;
  /**
   * The session to use: an AssistdSession, or options for a new one (token store, callbacks).
   * Default: a new session with in-memory tokens.
   */
  session?: AssistdSession | SessionOptions;
  /** Extra interceptors, run outside the auth interceptor (they see the retried call once). */
  interceptors?: Interceptor[];
  /**
   * Builds a grpc-web (binary) transport. Default: connect-web's createGrpcWebTransport
   * (browsers, and runtimes with fetch). In Node, pass connect-node's:
   * `(init) => createGrpcWebTransport({ ...init, httpVersion: "1.1" })`, and say so in
   * `httpVersion`.
   */
  transport?: (init: TransportInit) => Transport;
  /**
   * The HTTP version `transport` speaks. Over "1.1" a unary request that the connection closed
   * under while it was still being written (EPIPE) is sent again: one connection carries one
   * call at a time, so the server cannot have read it whole. Over "2" nothing is sent again: many
   * calls share a connection, and a write error on it also fails calls the server may already
   * have run. Default: "1.1" with the default transport (fetch; Node's speaks HTTP/1.1, and
   * browsers never report such errors); with a `transport` of the app's own, no resend unless
   * this says "1.1".
   */
  httpVersion?: "1.1" | "2";
}

export interface AssistdClient {
  auth: Client<typeof AuthService>;
  apiKeys: Client<typeof UserApiKeyService>;
  chat: Client<typeof ChatService>;
  preferences: Client<typeof PreferencesService>;
  gmail: Client<typeof GmailService>;
  session: AssistdSession;
  /** Signs out on the server (if signed in) and forgets the tokens; listeners hear SIGNED_OUT. */
  signOut(): Promise<void>;
}

/** Typed clients for every assistd service over one grpc-web transport with the auth interceptor. */
export function createAssistdClient(options: AssistdClientOptions): AssistdClient {
  const session =
    options.session instanceof AssistdSession ? options.session : new AssistdSession(options.session);
  const make =
    options.transport ??
    ((init: TransportInit) => createGrpcWebTransport({ baseUrl: init.baseUrl, interceptors: init.interceptors }));
  const extra = options.interceptors ?? [];
  const httpVersion = options.httpVersion ?? (options.transport ? undefined : "1.1");
  const resend = httpVersion === "1.1" ? [retryUnsentRequests()] : [];
  const authed = make({ baseUrl: options.baseUrl, interceptors: [...extra, session.interceptor, ...resend] });
  session.bindTransport(make({ baseUrl: options.baseUrl, interceptors: [...extra, ...resend] }));
  const auth = createClient(AuthService, authed);
  return {
    auth,
    apiKeys: createClient(UserApiKeyService, authed),
    chat: createClient(ChatService, authed),
    preferences: createClient(PreferencesService, authed),
    gmail: createClient(GmailService, authed),
    session,
    async signOut() {
      if (await session.signedIn()) {
        try {
          await auth.signOut({});
        } finally {
          await session.end("SIGNED_OUT");
        }
      }
    },
  };
}
