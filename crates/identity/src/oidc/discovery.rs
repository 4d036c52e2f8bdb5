//! The provider's discovery document, fetched on first use and kept for an hour, turned into an
//! `openidconnect` client for the authorization URL and the token endpoint.

use std::sync::Arc;

use assistd_domain::Clock;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim,
    CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AuthType, EmptyAdditionalClaims, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    ExtraTokenFields, OAuth2TokenResponse, RefreshToken, Scope, StandardErrorResponse,
    StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;

use super::{CallReport, ClientSecret, OidcError};

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_TTL: chrono::Duration = chrono::Duration::hours(1);

const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// The `openidconnect` client with our token response type (raw ID token) and the endpoints
/// discovery guarantees.
pub(super) type ProviderClient = openidconnect::Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenEndpointResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// What discovery yields.
#[derive(Debug)]
pub(super) struct Provider {
    /// The issuer exactly as the discovery document states it.
    pub(super) issuer: String,
    pub(super) jwks_uri: Url,
    /// `revocation_endpoint` (RFC 7009 / RFC 8414), when the document names one. Google's is
    /// `https://oauth2.googleapis.com/revoke`.
    pub(super) revocation_endpoint: Option<Url>,
    pub(super) client: ProviderClient,
}

/// The one discovery field `CoreProviderMetadata` does not carry.
#[derive(Deserialize)]
struct RevocationMetadata {
    revocation_endpoint: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct DiscoveryCache {
    state: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    provider: Arc<Provider>,
    fetched_at: DateTime<Utc>,
    stale: bool,
}

impl Cached {
    fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        !self.stale && self.fetched_at <= now && now - self.fetched_at < DISCOVERY_TTL
    }
}

impl DiscoveryCache {
    /// The provider, from the cache while fresh. A failed fetch falls back to a stale copy.
    pub(super) async fn get(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        client_id: &str,
        client_secret: &ClientSecret,
        clock: &dyn Clock,
        calls: &CallReport,
    ) -> Result<Arc<Provider>, OidcError> {
        // Held across the fetch so concurrent first calls share one request.
        let mut state = self.state.lock().await;
        let now = clock.now();
        if let Some(cached) = state.as_ref().filter(|c| c.is_fresh(now)) {
            return Ok(cached.provider.clone());
        }
        let started = std::time::Instant::now();
        let discovered = discover(http, issuer, client_id, client_secret).await;
        calls.record("discovery", started, &discovered);
        match discovered {
            Ok(provider) => {
                let provider = Arc::new(provider);
                *state = Some(Cached {
                    provider: provider.clone(),
                    fetched_at: now,
                    stale: false,
                });
                Ok(provider)
            }
            Err(error) => match state.as_ref() {
                Some(cached) if matches!(error, OidcError::Unavailable(_)) => {
                    tracing::warn!(%error, "OpenID discovery failed; using the previous document");
                    Ok(cached.provider.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Fetch the document again on next use (keeping this one as a fallback).
    pub(super) fn mark_stale(&self) {
        if let Ok(mut state) = self.state.try_lock()
            && let Some(cached) = state.as_mut()
        {
            cached.stale = true;
        }
    }
}

/// The issuer without a trailing slash, after checking it is an `https` URL (or `http` on a
/// loopback address, for tests) without credentials, query or fragment.
pub(super) fn normalize_issuer(issuer: &str) -> Result<String, OidcError> {
    let bad = |why: &str| OidcError::Misconfigured(format!("issuer {issuer:?}: {why}"));
    let url = Url::parse(issuer).map_err(|_| bad("not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("must be an https URL")),
    }
    if url.host().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(issuer.trim_end_matches('/').to_owned())
}

async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    client_secret: &ClientSecret,
) -> Result<Provider, OidcError> {
    let url = format!("{issuer}{WELL_KNOWN}");
    let response = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| OidcError::Unavailable(format!("discovery request failed: {e}")))?;
    if !response.status().is_success() {
        return Err(OidcError::Unavailable(format!(
            "discovery document answered HTTP {}",
            response.status()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| OidcError::Unavailable(format!("discovery document unreadable: {e}")))?;
    let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
        .map_err(|e| OidcError::Unavailable(format!("discovery document unparsable: {e}")))?;

    // An unusable revocation endpoint only disables revocation, which is best effort.
    let revocation_endpoint = serde_json::from_slice::<RevocationMetadata>(&body)
        .ok()
        .and_then(|m| m.revocation_endpoint)
        .and_then(|url| Url::parse(&url).ok())
        .filter(|url| matches!(url.scheme(), "https" | "http"));
    let stated_issuer = metadata.issuer().as_str().to_owned();
    if stated_issuer.trim_end_matches('/') != issuer {
        return Err(OidcError::Misconfigured(format!(
            "the discovery document names issuer {stated_issuer:?}, expected {issuer:?}"
        )));
    }
    let token_url = metadata.token_endpoint().cloned().ok_or_else(|| {
        OidcError::Misconfigured("the discovery document has no token endpoint".into())
    })?;
    let jwks_uri = metadata.jwks_uri().url().clone();
    let auth_type = token_endpoint_auth_type(metadata.token_endpoint_auth_methods_supported());

    let client: ProviderClient = openidconnect::Client::from_provider_metadata(
        metadata,
        openidconnect::ClientId::new(client_id.to_owned()),
        Some(openidconnect::ClientSecret::new(
            client_secret.expose_secret().to_owned(),
        )),
    )
    .set_token_uri(token_url)
    .set_auth_type(auth_type);

    Ok(Provider {
        issuer: stated_issuer,
        jwks_uri,
        revocation_endpoint,
        client,
    })
}

/// `client_secret_basic` unless the provider lists only `client_secret_post`. An absent list
/// means basic (OpenID Connect Discovery 1.0, section 3).
pub(super) fn token_endpoint_auth_type(supported: Option<&Vec<CoreClientAuthMethod>>) -> AuthType {
    match supported {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

/// The token endpoint's answer with the ID token kept as the raw compact JWT, so that our own
/// verifier (not openidconnect's typed claims) is the only thing that interprets it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub(super) struct TokenEndpointResponse(StandardTokenResponse<RawIdToken, CoreTokenType>);

impl TokenEndpointResponse {
    pub(super) fn raw_id_token(&self) -> Option<&str> {
        self.0.extra_fields().id_token.as_deref()
    }
}

#[derive(Deserialize, Serialize)]
pub(super) struct RawIdToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl std::fmt::Debug for RawIdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIdToken")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ExtraTokenFields for RawIdToken {}

impl OAuth2TokenResponse for TokenEndpointResponse {
    type TokenType = CoreTokenType;

    fn access_token(&self) -> &AccessToken {
        self.0.access_token()
    }
    fn token_type(&self) -> &CoreTokenType {
        self.0.token_type()
    }
    fn expires_in(&self) -> Option<std::time::Duration> {
        self.0.expires_in()
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.0.refresh_token()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.0.scopes()
    }
}

impl
    openidconnect::TokenResponse<
        EmptyAdditionalClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for TokenEndpointResponse
{
    /// Always `None`: the ID token is read raw through `raw_id_token` and verified by us.
    fn id_token(&self) -> Option<&CoreIdToken> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_normalization() {
        assert_eq!(
            normalize_issuer("https://accounts.google.com/").unwrap(),
            "https://accounts.google.com"
        );
        assert_eq!(
            normalize_issuer("http://127.0.0.1:4444").unwrap(),
            "http://127.0.0.1:4444"
        );
        assert!(normalize_issuer("http://[::1]:4444").is_ok());
        assert!(normalize_issuer("http://localhost:4444").is_ok());
        assert!(normalize_issuer("http://example.com").is_err());
    }

    #[test]
    fn basic_auth_unless_only_post_is_listed() {
        use CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost, PrivateKeyJwt};
        let kind = |methods: Option<Vec<CoreClientAuthMethod>>| {
            matches!(
                token_endpoint_auth_type(methods.as_ref()),
                AuthType::RequestBody
            )
        };
        assert!(!kind(None));
        assert!(!kind(Some(vec![ClientSecretPost, ClientSecretBasic])));
        assert!(kind(Some(vec![ClientSecretPost])));
        assert!(kind(Some(vec![PrivateKeyJwt, ClientSecretPost])));
        assert!(!kind(Some(vec![PrivateKeyJwt])));
    }

    #[test]
    fn token_response_keeps_the_raw_id_token_and_redacts_it() {
        let response: TokenEndpointResponse = serde_json::from_value(serde_json::json!({
            "access_token": "ya29.a",
            "token_type": "Bearer",
            "expires_in": 3599,
            "scope": "openid email",
            "id_token": "h.p.s",
        }))
        .unwrap();
        assert_eq!(response.raw_id_token(), Some("h.p.s"));
        assert_eq!(response.scopes().map(Vec::len), Some(2));
        let printed = format!("{response:?}");
        assert!(!printed.contains("h.p.s") && !printed.contains("ya29.a"));
    }
}
