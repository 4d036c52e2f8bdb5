//! The HTTP surface: routing and each endpoint's answer.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    ACCESS_TOKEN_EXPIRES_IN, CODE_LIFETIME, ClientAuth, IssuedAccess, IssuedCode, RefreshGrant,
    Shared, State, TokenRequest, id_token_claims, jwt,
};

const JSON: &str = "application/json; charset=utf-8";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/jwks";
const AUTHORIZE: &str = "/authorize";
const TOKEN: &str = "/token";
const USERINFO: &str = "/userinfo";

/// Serves one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let mut state = shared.lock();
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, DISCOVERY) => json_response(StatusCode::OK, &discovery(&state.issuer)),
        (&Method::GET, JWKS) => jwks(&mut state),
        (&Method::GET, AUTHORIZE) => authorize(&mut state, parts.uri.query().unwrap_or("")),
        (&Method::POST, TOKEN) => token(&mut state, &parts.headers, &body),
        (&Method::GET | &Method::POST, USERINFO) => userinfo(&state, &parts.headers),
        (_, DISCOVERY | JWKS | AUTHORIZE | TOKEN | USERINFO) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed" }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" })),
    };
    Ok(response)
}

/// The discovery document.
fn discovery(issuer: &str) -> Value {
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

fn jwks(state: &mut State) -> Response<Full<Bytes>> {
    state.jwks_requests += 1;
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, JSON)
        .header(
            CACHE_CONTROL,
            format!("public, max-age={}", state.jwks_max_age),
        )
        .body(Full::new(Bytes::from(state.keys.jwks().to_string())))
        .expect("a max-age header value is ASCII")
}

/// Signs the current user in at once and redirects back with a code, or with an error once
/// the redirect URI is known to be the client's.
fn authorize(state: &mut State, query: &str) -> Response<Full<Bytes>> {
    let (params, repeated) = parse_form(query.as_bytes());
    state.authorize_requests.push(params.clone());
    if let Some(name) = repeated {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("invalid_request: parameter {name} given more than once"),
        );
    }
    let Some(client_id) = params.get("client_id") else {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: missing client_id",
        );
    };
    let Some(client) = state.clients.get(client_id) else {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("invalid_client: the OAuth client {client_id} was not found"),
        );
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: missing redirect_uri",
        );
    };
    if !client.redirect_uris.contains(redirect_uri) {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("redirect_uri_mismatch: {redirect_uri} is not registered for {client_id}"),
        );
    }
    let client_state = params.get("state").map(String::as_str);
    let fail = |error: &str, description: &str| {
        redirect(
            redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", client_state),
            ],
        )
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
    let Some(code_challenge) = params.get("code_challenge") else {
        return fail(
            "invalid_request",
            "Missing code_challenge: PKCE is required.",
        );
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256.");
    }
    if code_challenge.len() != 43 || !code_challenge.bytes().all(is_base64url) {
        return fail(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 digest.",
        );
    }
    let code = format!("4/0A{}", random_token());
    let issued = IssuedCode {
        client_id: client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        code_challenge: code_challenge.clone(),
        nonce: params.get("nonce").cloned(),
        scopes,
        user: state.user.clone(),
        offline: params.get("access_type").map(String::as_str) == Some("offline"),
        issued_at: tokio::time::Instant::now(),
        used: false,
        access_tokens: Vec::new(),
        refresh_tokens: Vec::new(),
    };
    let response = redirect(
        redirect_uri,
        &[("code", Some(&code)), ("state", client_state)],
    );
    state.codes.insert(code, issued);
    response
}

/// The token endpoint: record, maybe fail on purpose, authenticate the client, grant.
fn token(state: &mut State, headers: &HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    let (fields, repeated) = parse_form(body);
    let credentials = client_credentials(headers, &fields);
    let (auth, client_id) = match &credentials {
        Ok(credentials) => (credentials.auth, credentials.id.clone()),
        Err(auth) => (*auth, None),
    };
    state.token_requests.push(TokenRequest {
        grant_type: fields.get("grant_type").cloned().unwrap_or_default(),
        fields: fields.clone(),
        auth,
        client_id,
    });

    if let Some(status) = state.token_failure {
        let error = match status {
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            status if status.is_server_error() => "server_error",
            _ => "invalid_request",
        };
        let description = format!(
            "Simulated token endpoint failure (HTTP {}).",
            status.as_u16()
        );
        return token_error(status, error, &description);
    }
    let form_urlencoded = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_urlencoded {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        );
    }
    if let Some(name) = repeated {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Parameter {name} given more than once."),
        );
    }
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(ClientAuth::None) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Use one client authentication method, not several.",
            );
        }
        Err(_) => return invalid_client(true),
    };
    let authenticated = credentials.id.as_ref().is_some_and(|id| {
        state
            .clients
            .get(id)
            .zip(credentials.secret.as_ref())
            .is_some_and(|(client, secret)| &client.secret == secret)
    });
    let (true, Some(client_id)) = (authenticated, credentials.id) else {
        return invalid_client(credentials.auth == ClientAuth::Basic);
    };

    match fields.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(state, &client_id, &fields),
        Some("refresh_token") => refresh(state, &client_id, &fields),
        Some(_) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only authorization_code and refresh_token are supported.",
        ),
        None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        ),
    }
}

/// `grant_type=authorization_code`.
fn exchange_code(
    state: &mut State,
    client_id: &str,
    fields: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let Some(code) = fields.get("code") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: code",
        );
    };
    let Some(issued) = state.codes.get_mut(code) else {
        return invalid_grant("Malformed auth code.");
    };
    if issued.client_id != client_id {
        // Not consumed: another client must not be able to burn someone's code.
        return invalid_grant("The code was issued to another client.");
    }
    if issued.used {
        // RFC 6749 §4.1.2: a replayed code revokes what it gave.
        let (access, refresh) = (issued.access_tokens.clone(), issued.refresh_tokens.clone());
        for issued in &mut state.access_tokens {
            if access.contains(&issued.token) {
                issued.revoked = true;
            }
        }
        for token in &refresh {
            if let Some(grant) = state.refresh_tokens.get_mut(token) {
                grant.revoked = true;
            }
        }
        return invalid_grant("Code was already redeemed.");
    }
    issued.used = true;
    let issued = issued.clone();
    if issued.issued_at.elapsed() > CODE_LIFETIME {
        return invalid_grant("Code expired.");
    }
    if fields.get("redirect_uri") != Some(&issued.redirect_uri) {
        return invalid_grant("redirect_uri differs from the authorization request's.");
    }
    let Some(verifier) = fields.get("code_verifier") else {
        return invalid_grant("Missing code verifier.");
    };
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|byte| is_base64url(byte) || byte == b'.' || byte == b'~');
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !well_formed || challenge != issued.code_challenge {
        return invalid_grant("Invalid code verifier.");
    }

    let scope = issued.scopes.join(" ");
    let access_token = issue_access_token(state, &issued.user);
    let mut claims = id_token_claims(
        &state.issuer,
        client_id,
        &issued.user,
        issued.nonce.as_deref(),
    );
    claims.insert("at_hash".into(), jwt::at_hash(&access_token).into());
    for (name, value) in &state.claim_overrides {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
    let key = &state.keys.current;
    let id_token = key.sign(&Value::Object(claims));
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_EXPIRES_IN,
        "scope": scope,
        "id_token": id_token,
    });
    let refresh_token = (issued.offline && !state.omit_refresh_token).then(|| {
        let token = format!("1//0g{}", random_token());
        state.refresh_tokens.insert(
            token.clone(),
            RefreshGrant {
                client_id: client_id.to_owned(),
                scope,
                user: issued.user.clone(),
                revoked: false,
            },
        );
        state.refresh_order.push(token.clone());
        body["refresh_token"] = token.clone().into();
        token
    });
    if let Some(code) = state.codes.get_mut(code) {
        code.access_tokens.push(access_token);
        code.refresh_tokens.extend(refresh_token);
    }
    json_response(StatusCode::OK, &body)
}

/// `grant_type=refresh_token`.
fn refresh(
    state: &mut State,
    client_id: &str,
    fields: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    let Some(token) = fields.get("refresh_token") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    };
    let Some(grant) = state
        .refresh_tokens
        .get(token)
        .filter(|grant| !grant.revoked && grant.client_id == client_id)
    else {
        return invalid_grant("Token has been expired or revoked.");
    };
    let (scope, user) = (grant.scope.clone(), grant.user.clone());
    let access_token = issue_access_token(state, &user);
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_EXPIRES_IN,
            "scope": scope,
        }),
    )
}

/// The claims of the user an unrevoked bearer token was issued for.
fn userinfo(state: &State, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let issued = token.and_then(|token| {
        state
            .access_tokens
            .iter()
            .find(|issued| issued.token == token && !issued.revoked)
    });
    match issued {
        Some(issued) => json_response(StatusCode::OK, &Value::Object(issued.user.claims())),
        None => {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "invalid_token" }),
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
    }
}

/// The client's claimed identity.
struct Credentials {
    auth: ClientAuth,
    id: Option<String>,
    secret: Option<String>,
}

/// The client credentials of a token request. `Err(method)` for a malformed Basic header
/// (`Basic`) or for both methods at once (`None`).
fn client_credentials(
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

/// The pairs of a form or query (the last value of a repeated name) and the first repeated
/// name, if any.
fn parse_form(input: &[u8]) -> (HashMap<String, String>, Option<String>) {
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

/// The distinct scopes of a `scope` parameter, in order.
fn scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.split(' ').filter(|scope| !scope.is_empty()) {
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn issue_access_token(state: &mut State, user: &super::TestUser) -> String {
    let token = format!("ya29.a0{}", random_token());
    state.access_tokens.push(IssuedAccess {
        token: token.clone(),
        user: user.clone(),
        revoked: false,
    });
    token
}

/// `302 Found` to `uri` with `params` (those given) added to its query.
fn redirect(uri: &str, params: &[(&str, Option<&str>)]) -> Response<Full<Bytes>> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{separator}{}", query.finish());
    Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, location)
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .expect("a registered redirect URI makes a valid Location")
}

fn invalid_grant(description: &str) -> Response<Full<Bytes>> {
    token_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// `401 invalid_client`, with the challenge RFC 6749 §5.2 asks for after a Basic attempt.
fn invalid_client(basic: bool) -> Response<Full<Bytes>> {
    let mut response = token_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed.",
    );
    if basic {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"oidc\""),
        );
    }
    response
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// A JSON answer that no cache keeps (the JWKS overrides `Cache-Control`).
fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, JSON)
        .header(CACHE_CONTROL, "no-store")
        .header(PRAGMA, "no-cache")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static headers make a valid response")
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.to_owned())))
        .expect("static headers make a valid response")
}
