//! Per-address and per-account limits on the sign-in calls, so neither a single client nor a
//! single stolen refresh token can hammer the identity provider or the database.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use assistd_domain::{Error, ErrorReason, Result, UserId};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::SignInConfig;

/// Per-IP and per-user limits on the sign-in calls.
pub struct SignInRateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<UserId>,
}

impl std::fmt::Debug for SignInRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRateLimits").finish_non_exhaustive()
    }
}

impl SignInRateLimits {
    pub(super) fn new(config: &SignInConfig) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            per_ip: RateLimiter::keyed(quota(config.sign_in_per_ip_per_minute)),
            per_user: RateLimiter::keyed(quota(config.sign_in_per_user_per_minute)),
        }
    }

    fn exhausted(
        not_until: &governor::NotUntil<governor::clock::QuantaInstant>,
        what: &str,
    ) -> Error {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        Error::ResourceExhausted {
            reason: ErrorReason::RateLimited,
            message: format!("too many sign-in requests {what}; retry later"),
            retry_after: Some(wait.max(Duration::from_secs(1))),
        }
    }

    /// Counts one call from `ip`.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (RATE_LIMITED) with the time to wait.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<()> {
        let Some(ip) = ip else { return Ok(()) };
        // One IPv6 client usually holds a whole /64: count the network, not the address.
        let key = match ip {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
            v4 @ IpAddr::V4(_) => v4,
        };
        if self.per_ip.len() > 10_000 {
            self.per_ip.retain_recent();
        }
        self.per_ip
            .check_key(&key)
            .map_err(|not_until| Self::exhausted(&not_until, "from this address"))
    }

    /// Counts one call for `user`.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (RATE_LIMITED) with the time to wait.
    pub fn check_user(&self, user: UserId) -> Result<()> {
        if self.per_user.len() > 10_000 {
            self.per_user.retain_recent();
        }
        self.per_user
            .check_key(&user)
            .map_err(|not_until| Self::exhausted(&not_until, "for this account"))
    }
}
