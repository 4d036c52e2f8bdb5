//! The OAuth 2.0 and OpenID Connect pieces every provider here speaks the same way: the
//! discovery document, form parsing, client authentication at the token endpoint, PKCE,
//! ID-token claims, bearer tokens, and the shapes of redirects and error answers.
//!
//! The development provider is built from them, and so is the test provider of
//! `assistd-testkit`, which adds recordings and faults around the same protocol code.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::serve::{BodyError, read_body};

/// The JSON content type of every JSON answer.
pub const JSON: &str = "application/json; charset=utf-8";
/// Path of the discovery document.
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// Path of the JWKS.
pub const JWKS: &str = "/jwks";
/// Path of the authorization endpoint.
pub const AUTHORIZE: &str = "/authorize";
/// Path of the token endpoint.
pub const TOKEN: &str = "/token";
/// Path of the userinfo endpoint.
pub const USERINFO: &str = "/userinfo";
/// How long an ID token is valid, in seconds.
pub const ID_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The `expires_in` of an access token, as Google answers it.
pub const ACCESS_TOKEN_EXPIRES_IN: u64 = 3599;

/// The largest request body read; a larger one gets `413`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads a request body of at most [`MAX_BODY_BYTES`]; `Err` is the answer to give instead
/// (`413`, or `400` for a body that broke off).
///
/// # Errors
/// As above.
pub async fn read_request_body<B>(body: B) -> Result<Bytes, Box<Response<Full<Bytes>>>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read_body(body, MAX_BODY_BYTES).await.map_err(|err| {
        Box::new(match err {
            BodyError::TooLarge => token_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                &format!(
                    "The request body is larger than {} KiB.",
                    MAX_BODY_BYTES / 1024
                ),
            ),
            BodyError::Broken => token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body could not be read.",
            ),
        })
    })
}

/// The discovery document of `issuer`.
#[must_use]
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE}"),
        "token_endpoint": format!("{issuer}{TOKEN}"),
        "userinfo_endpoint": format!("{issuer}{USERINFO}"),
        "jwks_uri": format!("{issuer}{JWKS}"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "aud", "azp", "email", "email_verified", "exp", "hd", "iat", "iss", "name",
            "nonce", "picture", "sub", "at_hash",
        ],
    })
}

/// The claims of an ID token for a user with `user_claims` (`sub`, `email` …) issued by
/// `issuer` to `audience` now, valid for an hour, with `nonce` if given.
#[must_use]
pub fn id_token_claims(
    issuer: &str,
    audience: &str,
    user_claims: Map<String, Value>,
    nonce: Option<&str>,
) -> Map<String, Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("azp".into(), audience.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ID_TOKEN_LIFETIME_SECS).into());
    claims.extend(user_claims);
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    claims
}

/// The pairs of a form or query (the last value of a repeated name) and the first repeated
/// name, if any: OAuth parameters must not repeat (RFC 6749 §3.1).
#[must_use]
pub fn parse_form(input: &[u8]) -> (HashMap<String, String>, Option<String>) {
    let mut seen = HashSet::new();
    let mut repeated = None;
    let mut fields = HashMap::new();
    for (name, value) in form_urlencoded::parse(input).into_owned() {
        if !seen.insert(name.clone()) && repeated.is_none() {
            repeated = Some(name.clone());
        }
        fields.insert(name, value);
    }
    (fields, repeated)
}

/// Whether a request's `Content-Type` is `application/x-www-form-urlencoded`.
#[must_use]
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The distinct scopes of a `scope` parameter, in order.
#[must_use]
pub fn scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.split(' ').filter(|scope| !scope.is_empty()) {
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// An authorization request that passed [`check_authorization`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The registered client asking.
    pub client_id: String,
    /// One of that client's registered redirect URIs.
    pub redirect_uri: String,
    /// The client's `state`, to send back.
    pub state: Option<String>,
    /// The distinct scopes asked for, `openid` among them.
    pub scopes: Vec<String>,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// The `nonce` to put in the ID token.
    pub nonce: Option<String>,
    /// `access_type=offline`: the code exchange also gives a refresh token.
    pub offline: bool,
}

impl Authorization {
    /// The redirect back to the client with `code` and its `state`.
    #[must_use]
    pub fn grant(&self, code: &str) -> Response<Full<Bytes>> {
        redirect(
            &self.redirect_uri,
            &[("code", Some(code)), ("state", self.state.as_deref())],
        )
    }
}

/// Checks an authorization request's `params` (`repeated`, the first repeated name, from
/// [`parse_form`]) against the clients `redirect_uris_of` knows (`None` for an unknown
/// client). `Err` is the answer to give instead: a plain `400` page until the redirect URI is
/// known to be the client's, then a redirect to it with `error`, as Google does.
///
/// # Errors
/// As above.
pub fn check_authorization(
    params: &HashMap<String, String>,
    repeated: Option<&str>,
    redirect_uris_of: impl FnOnce(&str) -> Option<Vec<String>>,
) -> Result<Authorization, Box<Response<Full<Bytes>>>> {
    let refuse = |text: &str| Err(Box::new(plain(StatusCode::BAD_REQUEST, text)));
    if let Some(name) = repeated {
        return refuse(&format!(
            "invalid_request: parameter {name} given more than once"
        ));
    }
    let Some(client_id) = params.get("client_id") else {
        return refuse("invalid_request: missing client_id");
    };
    let Some(registered) = redirect_uris_of(client_id) else {
        return refuse(&format!(
            "invalid_client: the OAuth client {client_id:?} is not registered with this provider"
        ));
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return refuse("invalid_request: missing redirect_uri");
    };
    if !registered.contains(redirect_uri) {
        return refuse(&format!(
            "redirect_uri_mismatch: {redirect_uri:?} is not registered for {client_id}; registered: {}",
            registered.join(", ")
        ));
    }
    let client_state = params.get("state").map(String::as_str);
    let fail = |error: &str, description: &str| {
        Err(Box::new(redirect(
            redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", client_state),
            ],
        )))
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return fail(
            "unsupported_response_type",
            "Only response_type=code is supported.",
        );
    }
    let scopes = scopes(params.get("scope").map_or("", String::as_str));
    if !scopes.iter().any(|scope| scope == "openid") {
        return fail("invalid_scope", "The scope must include openid.");
    }
    if let Some(problem) = pkce_challenge_problem(params) {
        return fail("invalid_request", problem);
    }
    Ok(Authorization {
        client_id: client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: client_state.map(str::to_owned),
        scopes,
        code_challenge: params["code_challenge"].clone(),
        nonce: params.get("nonce").cloned(),
        offline: params.get("access_type").map(String::as_str) == Some("offline"),
    })
}

/// Why an authorization request's PKCE parameters are refused, if they are: `S256` and a
/// base64url SHA-256 digest are required.
#[must_use]
pub fn pkce_challenge_problem(params: &HashMap<String, String>) -> Option<&'static str> {
    let Some(challenge) = params.get("code_challenge") else {
        return Some("Missing code_challenge: PKCE is required.");
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Some("code_challenge_method must be S256.");
    }
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return Some("code_challenge must be a base64url SHA-256 digest.");
    }
    None
}

/// Whether `verifier` is a well-formed PKCE code verifier (RFC 7636 §4.1) whose S256
/// challenge is `challenge`.
#[must_use]
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|byte| is_base64url(byte) || byte == b'.' || byte == b'~');
    well_formed && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// How a token request authenticated its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// `client_secret_basic`: an `Authorization: Basic` header.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post,
    /// No client secret at all.
    None,
}

/// A client's claimed identity at the token endpoint.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// How it authenticated.
    pub auth: ClientAuth,
    /// The client id it claimed.
    pub id: Option<String>,
    /// The secret it presented.
    pub secret: Option<String>,
}

impl Credentials {
    /// Whether these credentials name `id` with `secret`.
    #[must_use]
    pub fn are(&self, id: &str, secret: &str) -> bool {
        self.id.as_deref() == Some(id) && self.secret.as_deref() == Some(secret)
    }
}

/// The client credentials of a token request. `Err(method)` for a malformed Basic header
/// (`Basic`) or for both methods at once (`None`).
///
/// # Errors
/// As above; answer with [`invalid_client`] or, for both methods, `invalid_request`.
pub fn client_credentials(
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
) -> Result<Credentials, ClientAuth> {
    let basic = headers
        .get(AUTHORIZATION)
        .map(|value| {
            let value = value.to_str().map_err(|_| ClientAuth::Basic)?;
            let (scheme, encoded) = value.split_once(' ').ok_or(ClientAuth::Basic)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(ClientAuth::Basic);
            }
            let decoded = STANDARD
                .decode(encoded.trim())
                .map_err(|_| ClientAuth::Basic)?;
            let decoded = String::from_utf8(decoded).map_err(|_| ClientAuth::Basic)?;
            let (id, secret) = decoded.split_once(':').ok_or(ClientAuth::Basic)?;
            // RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
            Ok((
                form_decode(id).ok_or(ClientAuth::Basic)?,
                form_decode(secret).ok_or(ClientAuth::Basic)?,
            ))
        })
        .transpose()?;
    match (basic, fields.get("client_secret")) {
        (Some(_), Some(_)) => Err(ClientAuth::None),
        (Some((id, secret)), None) => {
            // A client_id in the form too must name the same client.
            if fields
                .get("client_id")
                .is_some_and(|form_id| *form_id != id)
            {
                return Err(ClientAuth::Basic);
            }
            Ok(Credentials {
                auth: ClientAuth::Basic,
                id: Some(id),
                secret: Some(secret),
            })
        }
        (None, Some(secret)) => Ok(Credentials {
            auth: ClientAuth::Post,
            id: fields.get("client_id").cloned(),
            secret: Some(secret.clone()),
        }),
        (None, None) => Ok(Credentials {
            auth: ClientAuth::None,
            id: fields.get("client_id").cloned(),
            secret: None,
        }),
    }
}

/// The answer to a token request [`client_credentials`] could not read: `invalid_request`
/// for two methods at once, `invalid_client` for a malformed Basic header.
#[must_use]
pub fn unreadable_credentials(auth: ClientAuth) -> Response<Full<Bytes>> {
    match auth {
        ClientAuth::None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Use one client authentication method, not several.",
        ),
        ClientAuth::Basic | ClientAuth::Post => invalid_client(true),
    }
}

/// The token endpoint's answer to a parameter given more than once.
#[must_use]
pub fn repeated_parameter(name: &str) -> Response<Full<Bytes>> {
    token_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("Parameter {name} given more than once."),
    )
}

/// Decodes one `application/x-www-form-urlencoded` value; `None` if it is not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if bytes
                .get(index + 1..index + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
            {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3])
                    .expect("hex digits are ASCII");
                decoded.push(u8::from_str_radix(hex, 16).expect("two hex digits make a byte"));
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded).ok()
}

/// The token of an `Authorization: Bearer` header (the scheme in any case).
#[must_use]
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// `/userinfo`'s answer: the claims of the token's user, or `401 invalid_token` with its
/// challenge.
#[must_use]
pub fn userinfo_answer(user_claims: Option<Map<String, Value>>) -> Response<Full<Bytes>> {
    match user_claims {
        Some(claims) => json_response(StatusCode::OK, &Value::Object(claims)),
        None => {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "invalid_token", "error_description": "Unknown, expired or revoked access token." }),
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
    }
}

/// Whether `byte` is in the base64url alphabet.
#[must_use]
pub fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// 32 random bytes, base64url: the body of codes and tokens.
#[must_use]
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A new authorization code, shaped like Google's.
#[must_use]
pub fn new_code() -> String {
    format!("4/0A{}", random_token())
}

/// A new access token, shaped like Google's.
#[must_use]
pub fn new_access_token() -> String {
    format!("ya29.a0{}", random_token())
}

/// A new refresh token, shaped like Google's.
#[must_use]
pub fn new_refresh_token() -> String {
    format!("1//0g{}", random_token())
}

/// `302 Found` to `uri` with `params` (those given) added to its query.
#[must_use]
pub fn redirect(uri: &str, params: &[(&str, Option<&str>)]) -> Response<Full<Bytes>> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, format!("{uri}{separator}{}", query.finish()))
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| {
            plain(
                StatusCode::BAD_REQUEST,
                "the redirect URI is not a valid header value",
            )
        })
}

/// The token endpoint's `400 invalid_grant`.
#[must_use]
pub fn invalid_grant(description: &str) -> Response<Full<Bytes>> {
    token_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// `401 invalid_client`, with the challenge RFC 6749 §5.2 asks for after a Basic attempt.
#[must_use]
pub fn invalid_client(basic: bool) -> Response<Full<Bytes>> {
    let mut response = token_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed: wrong client id or secret.",
    );
    if basic {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"oidc\""),
        );
    }
    response
}

/// An OAuth error answer: `{"error", "error_description"}`.
#[must_use]
pub fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// A JSON answer that no cache keeps.
#[must_use]
pub fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = respond(status, JSON, body.to_string());
    response
        .headers_mut()
        .insert(PRAGMA, http::HeaderValue::from_static("no-cache"));
    response
}

/// The JWKS answer, cacheable for `max_age` seconds as Google's is.
#[must_use]
pub fn jwks_response(jwks: &Value, max_age: u64) -> Response<Full<Bytes>> {
    let mut response = respond(StatusCode::OK, JSON, jwks.to_string());
    response.headers_mut().insert(
        CACHE_CONTROL,
        http::HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .expect("a max-age is ASCII"),
    );
    response
}

/// An HTML page that no cache keeps.
#[must_use]
pub fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", page)
}

/// A plain-text answer that no cache keeps, for errors shown to a person.
#[must_use]
pub fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", text.to_owned())
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_str(content_type).expect("content types are ASCII"),
    );
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded_and_not_mixed_with_post() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("web%3Aapp:s%2Bcret");
        headers.insert(AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
        let credentials = client_credentials(&headers, &HashMap::new()).unwrap();
        assert_eq!(credentials.auth, ClientAuth::Basic);
        assert!(credentials.are("web:app", "s+cret"));
        let both = HashMap::from([("client_secret".to_owned(), "x".to_owned())]);
        assert_eq!(
            client_credentials(&headers, &both).unwrap_err(),
            ClientAuth::None
        );
    }

    #[test]
    fn a_verifier_must_be_well_formed_and_match() {
        let verifier = "a-code-verifier-that-is-long-enough-for-pkce-0123456789";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        assert!(verifier_matches(verifier, &challenge));
        assert!(!verifier_matches("short", &challenge));
        assert!(!verifier_matches(&format!("{verifier}!"), &challenge));
    }
}
