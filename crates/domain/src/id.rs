//! Typed identifiers. Each is a UUIDv7 (time-ordered, so indexes stay append-mostly) wrapped in
//! its own type, parsed once at the boundary so ids of different kinds cannot be mixed up.

/// Declares a UUIDv7 newtype with parsing, display and conversions.
macro_rules! new_uuid {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new, time-ordered id.
            #[must_use]
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Wraps an id read from storage or a verified token.
            #[must_use]
            pub const fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

pub(crate) use new_uuid;

new_uuid!(
    /// Identifies a user account. It is the `sub` of our access tokens.
    UserId
);

new_uuid!(
    /// Identifies a sign-in session: one signed-in device, one refresh-token family. It is the
    /// `sid` of the access tokens issued in the session.
    AuthSessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_round_trip_through_text_and_are_time_ordered() {
        let first = UserId::new();
        let second = UserId::new();
        assert!(first < second, "UUIDv7 ids must sort by creation time");
        let parsed: UserId = first.to_string().parse().unwrap();
        assert_eq!(parsed, first);
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }
}
