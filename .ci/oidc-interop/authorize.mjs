// Browser-less login: follow an authorization URL the way a browser would (cookies kept,
// 30x Location headers followed) until the provider redirects to the client's redirect URI.
//
// Usage: OIDC_REDIRECT_URI=http://127.0.0.1:PORT/cb node authorize.mjs '<authorization url>'
// stdout: the final redirect URL (…?code=…&state=…); exit 0.
// On an unexpected status: status and body on stderr; exit 1.
// OIDC_REDIRECT_URI may be a comma-separated list: the first entry is used. When unset, the
// authorization URL's own redirect_uri parameter is used.

const MAX_HOPS = 20;
const REQUEST_TIMEOUT_MS = 15_000;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

function fail(message) {
  process.stderr.write(`authorize: ${message}\n`);
  process.exit(1);
}

const start = process.argv[2];
if (!start) fail('usage: node authorize.mjs <authorization url>');

let startUrl;
try {
  startUrl = new URL(start);
} catch {
  fail(`not a URL: ${start}`);
}

const redirectUri = (process.env.OIDC_REDIRECT_URI ?? '').split(',')[0].trim()
  || startUrl.searchParams.get('redirect_uri');
if (!redirectUri) fail('OIDC_REDIRECT_URI is not set and the URL has no redirect_uri');
let redirectPrefix = redirectUri;
try {
  redirectPrefix = new URL(redirectUri).href; // same normalisation as the Location below
} catch {
  // keep the raw string
}

// ---- a small cookie jar (host + path scoped, honours Max-Age/Expires) -----------------
const jar = new Map(); // key `${host}\t${path}\t${name}` -> { host, path, name, value, expires }

function defaultPath(url) {
  const p = url.pathname;
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function storeCookies(url, response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = defaultPath(url);
    let expires = Infinity;
    for (const attr of attrs) {
      const [k, ...rest] = attr.split('=');
      const key = k.trim().toLowerCase();
      const v = rest.join('=').trim();
      if (key === 'path' && v.startsWith('/')) path = v;
      else if (key === 'max-age') expires = Date.now() + Number(v) * 1000;
      else if (key === 'expires' && expires === Infinity) {
        const t = Date.parse(v);
        if (!Number.isNaN(t)) expires = t;
      }
    }
    const key = `${url.hostname}\t${path}\t${name}`;
    if (expires <= Date.now()) jar.delete(key);
    else jar.set(key, { host: url.hostname, path, name, value, expires });
  }
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function cookieHeader(url) {
  const now = Date.now();
  return [...jar.values()]
    .filter((c) => c.host === url.hostname && c.expires > now && pathMatches(url.pathname, c.path))
    .sort((a, b) => b.path.length - a.path.length)
    .map((c) => `${c.name}=${c.value}`)
    .join('; ');
}

// ---- follow ---------------------------------------------------------------------------
let url = startUrl;
for (let hop = 1; hop <= MAX_HOPS; hop += 1) {
  const headers = { accept: 'text/html,application/json;q=0.9,*/*;q=0.8' };
  const cookie = cookieHeader(url);
  if (cookie) headers.cookie = cookie;

  let response;
  try {
    response = await fetch(url, {
      redirect: 'manual',
      headers,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    fail(`GET ${url.href} failed: ${err?.cause?.message ?? err?.message ?? err}`);
  }
  storeCookies(url, response);

  const location = response.headers.get('location');
  if (!REDIRECT_STATUSES.has(response.status) || !location) {
    const body = await response.text().catch(() => '');
    fail(`unexpected HTTP ${response.status} from GET ${url.href}\n${body}`);
  }
  await response.body?.cancel();

  const next = new URL(location, url);
  if (next.href.startsWith(redirectPrefix) || next.href.startsWith(redirectUri)) {
    if (next.searchParams.has('error')) {
      process.stderr.write(`authorize: redirected with error=${next.searchParams.get('error')}`
        + ` ${next.searchParams.get('error_description') ?? ''}\n`);
    }
    process.stdout.write(`${next.href}\n`);
    process.exit(0);
  }
  url = next;
}
fail(`gave up after ${MAX_HOPS} redirects (last: ${url.href})`);
