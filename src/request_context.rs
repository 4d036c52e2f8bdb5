//! Who is calling from where: the request id, the client address and user agent, for the
//! audit log. `x-forwarded-for` is believed only when the direct peer is a configured trusted
//! proxy, and then only up to the first address that is not itself a trusted proxy.

use std::net::IpAddr;

use assistd_domain::audit::RequestContext;
use ipnet::IpNet;

/// Longest user agent kept.
const MAX_USER_AGENT: usize = 256;

/// Extracts [`RequestContext`]s, knowing which proxies may speak for clients.
#[derive(Clone, Debug, Default)]
pub struct ClientAddressPolicy {
    trusted_proxies: Vec<IpNet>,
}

impl ClientAddressPolicy {
    /// Trusts `x-forwarded-for` from peers inside `trusted_proxies`.
    #[must_use]
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        Self { trusted_proxies }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The context of `request`.
    #[must_use]
    pub fn context<T>(&self, request: &tonic::Request<T>) -> RequestContext {
        let metadata = request.metadata();
        let peer = request.remote_addr().map(|addr| addr.ip());
        self.build(
            |name| metadata.get(name).and_then(|v| v.to_str().ok()),
            peer,
        )
    }

    /// The context of a plain HTTP request, before tonic has made it a [`tonic::Request`]
    /// (the bearer layer's view).
    #[must_use]
    pub fn context_of_http<B>(&self, request: &http::Request<B>) -> RequestContext {
        let headers = request.headers();
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
            .map(|addr| addr.ip());
        self.build(|name| headers.get(name).and_then(|v| v.to_str().ok()), peer)
    }

    fn build<'a>(
        &self,
        text: impl Fn(&str) -> Option<&'a str>,
        peer: Option<IpAddr>,
    ) -> RequestContext {
        let request_id = text("x-request-id").unwrap_or_default().to_owned();
        let user_agent = text("x-user-agent")
            .or_else(|| text("user-agent"))
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        let client_ip = peer.map(|peer| self.client_ip(peer, text("x-forwarded-for")));
        RequestContext {
            request_id,
            client_ip,
            user_agent,
        }
    }

    /// Walks `x-forwarded-for` from the right while the hop is a trusted proxy.
    fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for.unwrap_or_default().rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let policy = ClientAddressPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // An untrusted peer cannot claim another address.
        assert_eq!(
            policy.client_ip(ip("198.51.100.4"), Some("203.0.113.9")),
            ip("198.51.100.4")
        );
        // Through a trusted proxy: the rightmost address that is not a proxy.
        assert_eq!(
            policy.client_ip(ip("10.1.2.3"), Some("1.2.3.4, 203.0.113.9, 10.9.9.9")),
            ip("203.0.113.9")
        );
        // A garbage hop stops the walk at the last good address.
        assert_eq!(
            policy.client_ip(ip("10.1.2.3"), Some("nonsense")),
            ip("10.1.2.3")
        );
        assert_eq!(
            ClientAddressPolicy::default().client_ip(ip("10.1.2.3"), Some("1.1.1.1")),
            ip("10.1.2.3")
        );
    }
}
