//! The HTTP surface: routing and each endpoint's answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use assistd_devkit::oidc::protocol::{
    ACCESS_TOKEN_EXPIRES_IN, AUTHORIZE, DISCOVERY, JWKS, TOKEN, USERINFO, bearer_token,
    check_authorization, client_credentials, discovery, id_token_claims, invalid_client,
    invalid_grant, is_form, json_response, jwks_response, new_access_token, new_code,
    new_refresh_token, parse_form, read_request_body, repeated_parameter, token_error,
    unreadable_credentials, userinfo_answer, verifier_matches,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{
    CODE_LIFETIME, ClientAuth, IssuedAccess, IssuedCode, RefreshGrant, Shared, State, TokenRequest,
    jwt,
};

/// The revocation endpoint's path (Google's is `https://oauth2.googleapis.com/revoke`).
pub(super) const REVOKE: &str = "/revoke";

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
        (&Method::GET, DISCOVERY) => {
            let mut document = discovery(&state.issuer);
            document["revocation_endpoint"] = format!("{}{REVOKE}", state.issuer).into();
            json_response(StatusCode::OK, &document)
        }
        (&Method::POST, REVOKE) => revoke(&mut state, &body),
        (&Method::GET, JWKS) => jwks(&mut state),
        (&Method::GET, AUTHORIZE) => authorize(&mut state, parts.uri.query().unwrap_or("")),
        (&Method::POST, TOKEN) => token(&mut state, &parts.headers, &body),
        (&Method::GET | &Method::POST, USERINFO) => userinfo(&state, &parts.headers),
        (_, DISCOVERY | JWKS | AUTHORIZE | TOKEN | USERINFO | REVOKE) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed" }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" })),
    };
    Ok(response)
}

fn jwks(state: &mut State) -> Response<Full<Bytes>> {
    state.jwks_requests += 1;
    jwks_response(&state.keys.jwks(), state.jwks_max_age)
}

/// Signs the current user in at once and redirects back with a code, or with an error once
/// the redirect URI is known to be the client's.
fn authorize(state: &mut State, query: &str) -> Response<Full<Bytes>> {
    let (params, repeated) = parse_form(query.as_bytes());
    state.authorize_requests.push(params.clone());
    let request = match check_authorization(&params, repeated.as_deref(), |client_id| {
        let client = state.clients.get(client_id)?;
        Some(client.redirect_uris.clone())
    }) {
        Ok(request) => request,
        Err(refusal) => return *refusal,
    };
    let include_granted = params.get("include_granted_scopes").map(String::as_str) == Some("true");
    let scopes = state.consent(
        &request.client_id,
        &state.user.sub.clone(),
        &request.scopes,
        include_granted,
    );
    let code = new_code();
    let response = request.grant(&code);
    let issued = IssuedCode {
        client_id: request.client_id,
        redirect_uri: request.redirect_uri,
        code_challenge: request.code_challenge,
        nonce: request.nonce,
        scopes,
        user: state.user.clone(),
        offline: request.offline,
        issued_at: tokio::time::Instant::now(),
        used: false,
        access_tokens: Vec::new(),
        refresh_tokens: Vec::new(),
    };
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
    if !is_form(headers) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        );
    }
    if let Some(name) = repeated {
        return repeated_parameter(&name);
    }
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(auth) => return unreadable_credentials(auth),
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
    if !verifier_matches(verifier, &issued.code_challenge) {
        return invalid_grant("Invalid code verifier.");
    }

    let scope = issued.scopes.join(" ");
    let access_token = issue_access_token(state, client_id, &issued.user, &issued.scopes);
    let mut claims = id_token_claims(
        &state.issuer,
        client_id,
        issued.user.claims(),
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
    let claims = Value::Object(claims);
    let id_token = match state.id_token_forgery {
        Some(kind) => jwt::hostile(&state.keys, &claims, kind),
        None => state.keys.current.sign(&claims),
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_EXPIRES_IN,
        "scope": scope,
        "id_token": id_token,
    });
    let refresh_token = (issued.offline && !state.omit_refresh_token).then(|| {
        let token = new_refresh_token();
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
    let scopes: Vec<String> = scope
        .split(' ')
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    let access_token = issue_access_token(state, client_id, &user, &scopes);
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
    let issued = bearer_token(headers).and_then(|token| {
        state
            .access_tokens
            .iter()
            .find(|issued| issued.token == token && !issued.revoked && !issued.expired)
    });
    userinfo_answer(issued.map(|issued| issued.user.claims()))
}

pub(super) fn issue_access_token(
    state: &mut State,
    client_id: &str,
    user: &super::TestUser,
    scopes: &[String],
) -> String {
    let token = new_access_token();
    state.access_tokens.push(IssuedAccess {
        token: token.clone(),
        user: user.clone(),
        client_id: client_id.to_owned(),
        scopes: scopes.to_vec(),
        issued_at: tokio::time::Instant::now(),
        expired: false,
        revoked: false,
    });
    token
}

/// `POST /revoke` with `token=` (a refresh or an access token), as Google's revocation
/// endpoint: revokes the whole grant of that user to that client.
fn revoke(state: &mut State, body: &[u8]) -> Response<Full<Bytes>> {
    let (fields, _) = parse_form(body);
    let token = fields.get("token").cloned().unwrap_or_default();
    state.revocation_requests.push(token.clone());
    let by_refresh = state
        .refresh_tokens
        .get(&token)
        .filter(|grant| !grant.revoked)
        .map(|grant| (grant.client_id.clone(), grant.user.sub.clone()));
    let by_access = || {
        state
            .access_tokens
            .iter()
            .find(|issued| issued.token == token && !issued.revoked)
            .map(|issued| (issued.client_id.clone(), issued.user.sub.clone()))
    };
    match by_refresh.or_else(by_access) {
        Some((client_id, sub)) => {
            state.revoke_grant(&client_id, &sub);
            json_response(StatusCode::OK, &json!({}))
        }
        None => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_token", "error_description": "Token expired or revoked" }),
        ),
    }
}
