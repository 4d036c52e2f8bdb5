//! The provider's HTTP surface: routing and each endpoint's answer, on the shared
//! [protocol](super::protocol) pieces.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::protocol::{
    ACCESS_TOKEN_EXPIRES_IN, AUTHORIZE, Authorization, ClientAuth, DISCOVERY,
    ID_TOKEN_LIFETIME_SECS, JWKS, TOKEN, USERINFO, bearer_token, check_authorization,
    client_credentials, discovery, html, id_token_claims, invalid_client, invalid_grant, is_form,
    json_response, jwks_response, new_access_token, new_code, new_refresh_token, parse_form, plain,
    read_request_body, repeated_parameter, token_error, unreadable_credentials, userinfo_answer,
    verifier_matches,
};
use super::{DevUser, IssuedCode, Shared, State, keys, page};

const DEV_ID_TOKEN: &str = "/dev/id-token";
/// How long the JWKS may be cached: the key changes only when its file is deleted.
const JWKS_MAX_AGE_SECS: u64 = 300;

/// Serves one request.
pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match read_request_body(body).await {
        Ok(body) => body,
        Err(refusal) => return Ok(*refusal),
    };
    let mut state = shared.lock();
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, DISCOVERY) => json_response(StatusCode::OK, &discovery(&state.issuer)),
        (&Method::GET, JWKS) => jwks_response(&state.key.jwks(), JWKS_MAX_AGE_SECS),
        (&Method::GET, AUTHORIZE) => {
            let (params, repeated) = parse_form(parts.uri.query().unwrap_or("").as_bytes());
            match authorization(&state, &params, repeated.as_deref()) {
                Ok(_) => html(StatusCode::OK, page::login(&params)),
                Err(response) => *response,
            }
        }
        (&Method::POST, AUTHORIZE) => {
            let (params, repeated) = parse_form(&body);
            sign_in(&mut state, &params, repeated.as_deref())
        }
        (&Method::POST, TOKEN) => token(&mut state, &parts.headers, &body),
        (&Method::GET | &Method::POST, USERINFO) => {
            let user = bearer_token(&parts.headers)
                .and_then(|token| state.access_tokens.get(Instant::now(), token));
            userinfo_answer(user.map(DevUser::claims))
        }
        (&Method::POST, DEV_ID_TOKEN) => dev_id_token(&state, &parts.headers, &body),
        (_, DISCOVERY | JWKS | AUTHORIZE | TOKEN | USERINFO | DEV_ID_TOKEN) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed" }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" })),
    };
    Ok(response)
}

/// Checks an authorization request against the one registered client.
fn authorization(
    state: &State,
    params: &HashMap<String, String>,
    repeated: Option<&str>,
) -> Result<Authorization, Box<Response<Full<Bytes>>>> {
    check_authorization(params, repeated, |client_id| {
        (client_id == state.client.client_id).then(|| state.client.redirect_uris.clone())
    })
}

/// The login form's POST: signs the typed-in user in and redirects back with a code.
fn sign_in(
    state: &mut State,
    params: &HashMap<String, String>,
    repeated: Option<&str>,
) -> Response<Full<Bytes>> {
    let request = match authorization(state, params, repeated) {
        Ok(request) => request,
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
    let code = new_code();
    let response = request.grant(&code);
    state.codes.insert(
        Instant::now(),
        code,
        IssuedCode {
            redirect_uri: request.redirect_uri,
            code_challenge: request.code_challenge,
            nonce: request.nonce,
            scope: request.scopes.join(" "),
            user,
            offline: request.offline,
        },
    );
    response
}

/// The token endpoint: authenticate the client, then grant.
fn token(state: &mut State, headers: &HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    if !is_form(headers) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        );
    }
    let (fields, repeated) = parse_form(body);
    if let Some(name) = repeated {
        return repeated_parameter(&name);
    }
    let credentials = match client_credentials(headers, &fields) {
        Ok(credentials) => credentials,
        Err(auth) => return unreadable_credentials(auth),
    };
    if !credentials.are(&state.client.client_id, &state.client.client_secret) {
        return invalid_client(credentials.auth == ClientAuth::Basic);
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
    if !verifier_matches(verifier, &issued.code_challenge) {
        return invalid_grant("Invalid code verifier.");
    }
    let access_token = new_access_token();
    state
        .access_tokens
        .insert(now, access_token.clone(), issued.user.clone());
    let mut claims = id_token_claims(
        &state.issuer,
        &state.client.client_id,
        issued.user.claims(),
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
        let refresh_token = new_refresh_token();
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
    let access_token = new_access_token();
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
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The body must be a JSON object of strings.",
                );
            }
        }
    } else {
        parse_form(body).0
    };
    let email = fields.get("email").map_or("", String::as_str).trim();
    if !plausible_email(email) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "email is required, e.g. ada@example.com",
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
        user.claims(),
        fields.get("nonce").map(String::as_str),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "id_token": state.key.sign(&Value::Object(claims)),
            "sub": user.sub,
            "expires_in": ID_TOKEN_LIFETIME_SECS,
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
