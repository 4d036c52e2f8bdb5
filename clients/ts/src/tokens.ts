import type { SessionTokens } from "../gen/assistd/auth/v1/auth_pb.js";

/** The credentials of one signed-in session, as the client keeps them. */
export interface Tokens {
  accessToken: string;
  refreshToken: string;
  /** When the server stops accepting the access token (ms since the epoch); 0 if unknown. */
  accessTokenExpiresAt: number;
  /** When the refresh token expires unused (ms since the epoch); 0 if unknown. */
  refreshTokenExpiresAt: number;
  sessionId: string;
}

/**
 * Where the client keeps the session's tokens. The app decides persistence: the default keeps
 * them in memory only; a web app might keep the refresh token in an httpOnly cookie set by its
 * own backend, a mobile app in the Keychain/Keystore. Methods may be sync or async.
 */
export interface TokenStore {
  get(): Tokens | undefined | Promise<Tokens | undefined>;
  set(tokens: Tokens): void | Promise<void>;
  clear(): void | Promise<void>;
}

/** A token store that forgets everything when the page or process goes away. */
export function memoryTokenStore(initial?: Tokens): TokenStore {
  let current = initial;
  return {
    get: () => current,
    set: (tokens) => {
      current = tokens;
    },
    clear: () => {
      current = undefined;
    },
  };
}

/** Converts the SessionTokens of a sign-in or Refresh response. */
export function tokensFromProto(tokens: SessionTokens | undefined): Tokens {
  if (!tokens || tokens.accessToken === "" || tokens.refreshToken === "") {
    throw new Error("the server answered without session tokens");
  }
  const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
    t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : 0;
  return {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessTokenExpiresAt: ms(tokens.accessTokenExpireTime),
    refreshTokenExpiresAt: ms(tokens.refreshTokenExpireTime),
    sessionId: tokens.sessionId,
  };
}
