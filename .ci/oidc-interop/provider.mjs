// Local OpenID Provider for assistd interoperability tests.
//
// Runs the OpenID-certified `oidc-provider` package on 127.0.0.1 with one confidential
// client (client_secret_basic, PKCE S256 required) and one account. Login and consent are
// completed without a human by custom interaction routes, so following the redirects of an
// authorization URL (see authorize.mjs) ends at the client's redirect URI with code + state.
//
// Env: OIDC_PORT (0 = free port), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
//      OIDC_REDIRECT_URI (comma-separated list allowed).
// stdout: exactly one line, `OIDC_ISSUER=http://127.0.0.1:<port>`, once listening.
// Everything else goes to stderr.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

// oidc-provider prints its NOTICEs with console.info (stdout); keep stdout for the one
// machine-readable line only.
console.log = console.error;
console.info = console.error;

const log = (...args) => console.error('[oidc-interop]', ...args);

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    log(`missing required environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(env('OIDC_PORT', '0'), 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  log(`invalid OIDC_PORT ${process.env.OIDC_PORT}`);
  process.exit(2);
}
const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');
const redirectUris = env('OIDC_REDIRECT_URI')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

// Imported after the console patch so import-time notices also land on stderr.
const { default: Provider } = await import('oidc-provider');

// ---- the one account -----------------------------------------------------------------
const ACCOUNTS = new Map([
  [
    'interop-user-1',
    {
      sub: 'interop-user-1',
      email: 'grace@example.org',
      email_verified: true,
      name: 'Grace Hopper',
      picture: 'https://example.org/grace-hopper.png',
    },
  ],
]);
const DEFAULT_ACCOUNT = 'interop-user-1';

async function findAccount(_ctx, sub) {
  const record = ACCOUNTS.get(sub);
  if (!record) return undefined;
  return {
    accountId: sub,
    // oidc-provider filters these by granted scopes/claims.
    async claims() {
      return { ...record };
    },
  };
}

// ---- keys ----------------------------------------------------------------------------
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `interop-rs256-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};
const cookieKeys = [randomBytes(32).toString('base64url')];

// Google-style `access_type=offline` behaves like the `offline_access` scope: the
// interaction adds `offline_access` to the grant and a refresh token is issued.
const wantsOffline = (ctx, source) => source?.scopes?.has('offline_access')
  || ctx.oidc?.params?.access_type === 'offline'
  || (ctx.oidc?.entities?.Grant?.getOIDCScope() ?? '').split(' ').includes('offline_access');

// ---- server --------------------------------------------------------------------------
let provider;
let providerCallback;

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)\/?$/;

async function handleInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;

  if (prompt.name === 'login') {
    result = { login: { accountId: DEFAULT_ACCOUNT } };
  } else if (prompt.name === 'consent') {
    const accountId = session?.accountId ?? DEFAULT_ACCOUNT;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const pd = prompt.details ?? {};
    if (pd.missingOIDCScope) grant.addOIDCScope(pd.missingOIDCScope.join(' '));
    if (pd.missingOIDCClaims) grant.addOIDCClaims(pd.missingOIDCClaims);
    if (pd.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(pd.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    if (params.access_type === 'offline') grant.addOIDCScope('offline_access');
    const grantId = await grant.save();
    result = { consent: details.grantId ? {} : { grantId } };
  } else {
    throw new Error(`unsupported prompt ${prompt.name}`);
  }

  log(`interaction ${details.uid}: ${prompt.name} (${(prompt.reasons ?? []).join(',')}) -> finished`);
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const server = createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'GET' && INTERACTION_PATH.test(pathname)) {
    handleInteraction(req, res).catch((err) => {
      log(`interaction error: ${err?.stack ?? err}`);
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      }
      res.end(`interaction failed: ${err?.message ?? err}\n`);
    });
    return;
  }
  if (!providerCallback) {
    res.writeHead(503).end('starting\n');
    return;
  }
  providerCallback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [signingJwk] },
    cookies: { keys: cookieKeys },
    findAccount,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'picture'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    // Put scope-derived claims into the ID token too, even though a userinfo endpoint exists.
    conformIdTokenClaims: false,
    // Recognised (so they reach the interaction) but otherwise ignored.
    extraParams: ['access_type', 'include_granted_scopes'],
    // v9 supports S256 only; require it for every client.
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (ctx, client, source) => client.grantTypeAllowed('refresh_token')
      && wantsOffline(ctx, source),
    expiresWithSession: async (ctx, source) => !wantsOffline(ctx, source),
    // Explicit lifetimes (seconds); also silences the "default ttl.* function" notices.
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  });

  provider.on('server_error', (ctx, err) => log('server_error', err));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (ctx, err) => log(event, err?.name, err?.error_description ?? err?.message, err?.cause?.message ? `(${err.cause.message})` : ''));
  }
  providerCallback = provider.callback();

  log(`client ${clientId}, redirect_uris ${redirectUris.join(' ')}, kid ${signingJwk.kid}`);
  process.stdout.write(`OIDC_ISSUER=${issuer}\n`);
});

server.on('error', (err) => {
  log(`server error: ${err?.stack ?? err}`);
  process.exit(1);
});

function shutdown(signal) {
  log(`${signal} received, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
