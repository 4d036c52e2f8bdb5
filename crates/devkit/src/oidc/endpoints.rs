//! The provider's HTTP surface: routing and each endpoint's answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    ACCESS_TOKEN_EXPIRES_IN, DevUser, IssuedCode, MAX_BODY_BYTES, Shared, State, id_token_claims,
    keys, page,
};
use crate::serve::{BodyError, read_body};

const JSON: &str = "application/json; charset=utf-8";
const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/jwks";
const AUTHORIZE: &str = "/authorize";
const TOKEN: &str = "/token";
const USERINFO: &str = "/userinfo";
const DEV_ID_TOKEN: &str = "/dev/id-token";

/// Serves one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Ok(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({
                    "error": "invalid_request",
                    "error_description": format!("The request body is larger than {} KiB.", MAX_BODY_BYTES / 1024),
                }),
            ));
        }
        Err(BodyError::Broken) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "invalid_request", "error_description": "The request body could not be read." }),
            ));
        }
    };
    let mut state = shared.lock();
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, DISCOVERY) => json_response(StatusCode::OK, &discovery(&state.issuer)),
        (&Method::GET, JWKS) => json_response(StatusCode::OK, &state.key.jwks()),
        (&Method::GET, AUTHORIZE) => {
            let params = parse_form(parts.uri.query().unwrap_or("").as_bytes());
            match check_authorization(&state, &params) {
                Ok(_) => html(StatusCode::OK, page::login(&params)),
                Err(response) => *response,
            }
        }
        (&Method::POST, AUTHORIZE) => sign_in(&mut state, &parse_form(&body)),
        (&Method::POST, TOKEN) => token(&mut state, &parts.headers, &body),
        (&Method::GET | &Method::POST, USERINFO) => userinfo(&state, &parts.headers),
        (&Method::POST, DEV_ID_TOKEN) => dev_id_token(&state, &parts.headers, &body),
        (_, DISCOVERY | JWKS | AUTHORIZE | TOKEN | USERINFO | DEV_ID_TOKEN) => json_response(
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
            "aud", "azp", "email", "email_verified", "exp", "iat", "iss", "name", "nonce",
            "sub", "at_hash",
        ],
    })
}

/// Checks an authorization request; `Err` is the answer to give instead: a plain `400` until
/// the redirect URI is known to be the client's, a redirect with `error` after.
fn check_authorization<'a>(
    state: &State,
    params: &'a HashMap<String, String>,
) -> Result<&'a str, Box<Response<Full<Bytes>>>> {
    let client_id = params.get("client_id").map_or("", String::as_str);
    if client_id != state.client.client_id {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid_client: the OAuth client {client_id:?} is not registered; this provider knows {:?}",
                state.client.client_id
            ),
        )));
    }
    let redirect_uri = params.get("redirect_uri").map_or("", String::as_str);
    if !state
        .client
        .redirect_uris
        .iter()
        .any(|uri| uri == redirect_uri)
    {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            &format!(
                "redirect_uri_mismatch: {redirect_uri:?} is not registered for {client_id}; registered: {}",
                state.client.redirect_uris.join(", ")
            ),
        )));
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
        return Err(Box::new(fail(
            "unsupported_response_type",
            "Only response_type=code is supported.",
        )));
    }
    let scope = params.get("scope").map_or("", String::as_str);
    if !scope.split(' ').any(|scope| scope == "openid") {
        return Err(Box::new(fail(
            "invalid_scope",
            "The scope must include openid.",
        )));
    }
    let challenge = params.get("code_challenge").map_or("", String::as_str);
    if params.get("code_challenge_method").map(String::as_str) != Some("S256")
        || challenge.len() != 43
        || !challenge.bytes().all(is_base64url)
    {
        return Err(Box::new(fail(
            "invalid_request",
            "PKCE is required: code_challenge must be a base64url SHA-256 digest with code_challenge_method=S256.",
        )));
    }
    Ok(redirect_uri)
}

/// The login form's POST: signs the typed-in user in and redirects back with a code.
fn sign_in(state: &mut State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let redirect_uri = match check_authorization(state, params) {
        Ok(uri) => uri.to_owned(),
        Err(response) => return *response,
    };
    let email = params.get("email").map_or("", String::as_str).trim();
    if !plausible_email(email) {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid_request: type an email address such as ada@example.com and submit again",
        );
    }
    let user = DevUser::new(email, params.get("name").map_or("", String::as_str));
    let code = format!("4/0A{}", random_token());
    state.codes.insert(
        Instant::now(),
        code.clone(),
        IssuedCode {
            redirect_uri: redirect_uri.clone(),
            code_challenge: params["code_challenge"].clone(),
            nonce: params.get("nonce").cloned(),
            scope: params.get("scope").cloned().unwrap_or_default(),
            user,
            offline: params.get("access_type").map(String::as_str) == Some("offline"),
        },
    );
    redirect(
        &redirect_uri,
        &[
            ("code", Some(&code)),
            ("state", params.get("state").map(String::as_str)),
        ],
    )
}

/// The token endpoint: authenticate the client, then grant.
fn token(state: &mut State, headers: &HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    let fields = parse_form(body);
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|decoded| {
            let (id, secret) = decoded.split_once(':')?;
            // RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
            let decode = |value: &str| {
                form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let (id, secret) = match basic {
        Some(credentials) => credentials,
        None => (
            fields.get("client_id").cloned().unwrap_or_default(),
            fields.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != state.client.client_id || secret != state.client.client_secret {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed: wrong client id or secret.",
        );
    }
    match fields.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(state, &fields),
        Some("refresh_token") => refresh(state, &fields),
        _ => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only authorization_code and refresh_token are supported.",
        ),
    }
}

/// `grant_type=authorization_code`.
fn exchange_code(state: &mut State, fields: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let code = fields.get("code").map_or("", String::as_str);
    // Single use: the first redemption consumes the code, whatever happens next.
    let now = Instant::now();
    let Some(issued) = state.codes.remove(now, code) else {
        return invalid_grant("The code is unknown, expired or already redeemed.");
    };
    if fields.get("redirect_uri") != Some(&issued.redirect_uri) {
        return invalid_grant("redirect_uri differs from the authorization request's.");
    }
    let verifier = fields.get("code_verifier").map_or("", String::as_str);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !(43..=128).contains(&verifier.len()) || challenge != issued.code_challenge {
        return invalid_grant("Invalid code verifier.");
    }
    let access_token = format!("ya29.dev{}", random_token());
    state
        .access_tokens
        .insert(now, access_token.clone(), issued.user.clone());
    let mut claims = id_token_claims(
        &state.issuer,
        &state.client.client_id,
        &issued.user,
        issued.nonce.as_deref(),
    );
    claims.insert("at_hash".into(), keys::at_hash(&access_token).into());
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_EXPIRES_IN,
        "scope": issued.scope,
        "id_token": state.key.sign(&Value::Object(claims)),
    });
    if issued.offline {
        let refresh_token = format!("1//dev{}", random_token());
        state
            .refresh_tokens
            .insert(now, refresh_token.clone(), (issued.scope, issued.user));
        body["refresh_token"] = refresh_token.into();
    }
    json_response(StatusCode::OK, &body)
}

/// `grant_type=refresh_token`.
fn refresh(state: &mut State, fields: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let token = fields.get("refresh_token").map_or("", String::as_str);
    let now = Instant::now();
    let Some((scope, user)) = state.refresh_tokens.get(now, token).cloned() else {
        return invalid_grant("Token has been expired or revoked.");
    };
    let access_token = format!("ya29.dev{}", random_token());
    state.access_tokens.insert(now, access_token.clone(), user);
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

/// The claims of the user a bearer token was issued for.
fn userinfo(state: &State, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let user = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| state.access_tokens.get(Instant::now(), token.trim()));
    match user {
        Some(user) => json_response(StatusCode::OK, &Value::Object(user.claims())),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "invalid_token", "error_description": "Unknown access token." }),
        ),
    }
}

/// `POST /dev/id-token`: an ID token for the named user, as Google Identity Services hands a
/// web page one. The audience defaults to the registered client.
fn dev_id_token(state: &State, headers: &HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let fields: HashMap<String, String> = if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object
                .into_iter()
                .filter_map(|(name, value)| value.as_str().map(|text| (name, text.to_owned())))
                .collect(),
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": "invalid_request", "error_description": "The body must be a JSON object of strings." }),
                );
            }
        }
    } else {
        parse_form(body)
    };
    let email = fields.get("email").map_or("", String::as_str).trim();
    if !plausible_email(email) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_request", "error_description": "email is required, e.g. ada@example.com" }),
        );
    }
    let user = DevUser::new(email, fields.get("name").map_or("", String::as_str));
    let audience = fields
        .get("audience")
        .filter(|audience| !audience.is_empty())
        .unwrap_or(&state.client.client_id);
    let claims = id_token_claims(
        &state.issuer,
        audience,
        &user,
        fields.get("nonce").map(String::as_str),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "id_token": state.key.sign(&Value::Object(claims)),
            "sub": user.sub,
            "expires_in": super::ID_TOKEN_LIFETIME_SECS,
        }),
    )
}

/// Something with a local part, an `@` and a domain.
fn plausible_email(email: &str) -> bool {
    email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace)
}

/// The pairs of a form or query, the last value of a repeated name.
fn parse_form(input: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(input).into_owned().collect()
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
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

fn invalid_grant(description: &str) -> Response<Full<Bytes>> {
    token_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// A JSON answer that no cache keeps.
fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    respond(status, JSON, body.to_string())
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", page)
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
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
