//! Service accounts: identities of other backends that call assistd as themselves.
//!
//! An administrator creates one with a name, the RPCs it may call and the users it may act for.
//! assistd keeps only its Ed25519 public key; the service signs short tokens with the private
//! key (shown once, at creation) and names the user each call is for. A revoked account stops
//! working on its next call.

use chrono::{DateTime, Utc};

use crate::id::new_uuid;
use crate::{Error, FieldViolation, Result, UserId};

new_uuid!(
    /// Identifies a service account. It is the `kid` header and the `sub` claim of the tokens
    /// the service signs.
    ServiceAccountId
);

/// Longest name of a service account.
pub const MAX_NAME_CHARS: usize = 64;
/// Most RPCs on one account's allowlist.
pub const MAX_ALLOWED_METHODS: usize = 100;
/// Most users listed on one account.
pub const MAX_ALLOWED_USERS: usize = 1_000;

/// Which users a service may act for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserScope {
    /// Any user with an account.
    Any,
    /// Only these users.
    Listed(Vec<UserId>),
}

impl UserScope {
    /// Whether the service may act for `user`.
    #[must_use]
    pub fn allows(&self, user: UserId) -> bool {
        match self {
            Self::Any => true,
            Self::Listed(users) => users.contains(&user),
        }
    }
}

/// A service account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its id.
    pub id: ServiceAccountId,
    /// A name for people, unique among accounts.
    pub name: String,
    /// The raw 32-byte Ed25519 public key its tokens are checked with.
    pub public_key: Vec<u8>,
    /// Full gRPC method paths it may call, e.g. `/assistd.chat.v1.ChatService/ListSessions`.
    pub allowed_methods: Vec<String>,
    /// The users it may act for.
    pub users: UserScope,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ServiceAccount {
    /// Whether it may still make calls.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether `method` (a full gRPC path) is on its allowlist.
    #[must_use]
    pub fn allows_method(&self, method: &str) -> bool {
        self.allowed_methods.iter().any(|allowed| allowed == method)
    }
}

/// What an administrator asks for when creating an account, checked by [`NewServiceAccount::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewServiceAccount {
    /// The name.
    pub name: String,
    /// The allowlist of full gRPC method paths, without duplicates.
    pub allowed_methods: Vec<String>,
    /// The users it may act for.
    pub users: UserScope,
}

impl NewServiceAccount {
    /// Checks a request to create an account: a name of 1 to [`MAX_NAME_CHARS`] letters,
    /// digits, `-`, `_` or `.`; 1 to [`MAX_ALLOWED_METHODS`] method paths of the form
    /// `/package.Service/Method` among `known_methods`; a user list that is not empty and at
    /// most [`MAX_ALLOWED_USERS`] long.
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming every field that is wrong.
    pub fn new(
        name: &str,
        allowed_methods: &[String],
        users: UserScope,
        known_methods: &[&str],
    ) -> Result<Self> {
        let mut violations = Vec::new();
        let name = name.to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            violations.push(FieldViolation::new(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            violations.push(FieldViolation::new(
                "name",
                "may hold only ASCII letters, digits, '-', '_' and '.'",
            ));
        }
        let mut methods: Vec<String> = Vec::new();
        if allowed_methods.is_empty() || allowed_methods.len() > MAX_ALLOWED_METHODS {
            violations.push(FieldViolation::new(
                "allowed_methods",
                format!("must list 1 to {MAX_ALLOWED_METHODS} RPCs"),
            ));
        }
        for (index, method) in allowed_methods.iter().enumerate() {
            if !known_methods.contains(&method.as_str()) {
                violations.push(FieldViolation::new(
                    format!("allowed_methods[{index}]"),
                    format!(
                        "{method:?} is not an RPC of this server that needs authentication; give the full path, e.g. /assistd.chat.v1.ChatService/ListSessions"
                    ),
                ));
            } else if !methods.contains(method) {
                methods.push(method.clone());
            }
        }
        if let UserScope::Listed(listed) = &users
            && (listed.is_empty() || listed.len() > MAX_ALLOWED_USERS)
        {
            violations.push(FieldViolation::new(
                "users",
                format!("must list 1 to {MAX_ALLOWED_USERS} user ids, or allow any user"),
            ));
        }
        if !violations.is_empty() {
            return Err(Error::from(violations));
        }
        let users = match users {
            UserScope::Any => UserScope::Any,
            UserScope::Listed(mut listed) => {
                listed.sort_unstable();
                listed.dedup();
                UserScope::Listed(listed)
            }
        };
        Ok(Self {
            name,
            allowed_methods: methods,
            users,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "/assistd.chat.v1.ChatService/ListSessions",
        "/assistd.preferences.v1.PreferencesService/GetPreferences",
    ];

    fn fields(err: &Error) -> Vec<String> {
        match err {
            Error::InvalidArgument { violations, .. } => {
                violations.iter().map(|v| v.field.clone()).collect()
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_is_normalised() {
        let user = UserId::new();
        let account = NewServiceAccount::new(
            "mail-digest.v2",
            &[
                KNOWN[0].to_owned(),
                KNOWN[0].to_owned(),
                KNOWN[1].to_owned(),
            ],
            UserScope::Listed(vec![user, user]),
            KNOWN,
        )
        .unwrap();
        assert_eq!(account.allowed_methods, vec![KNOWN[0], KNOWN[1]]);
        assert_eq!(account.users, UserScope::Listed(vec![user]));
        assert!(account.users.allows(user));
        assert!(!account.users.allows(UserId::new()));
        assert!(UserScope::Any.allows(UserId::new()));
    }

    #[test]
    fn every_wrong_field_is_named() {
        let err = NewServiceAccount::new(
            "has space",
            &["/assistd.auth.v1.AuthService/Nope".to_owned()],
            UserScope::Listed(Vec::new()),
            KNOWN,
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["name", "allowed_methods[0]", "users"]);
        let err = NewServiceAccount::new("", &[], UserScope::Any, KNOWN).unwrap_err();
        assert_eq!(fields(&err), ["name", "allowed_methods"]);
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let err = NewServiceAccount::new(&long, &[KNOWN[0].to_owned()], UserScope::Any, KNOWN)
            .unwrap_err();
        assert_eq!(fields(&err), ["name"]);
    }
}
