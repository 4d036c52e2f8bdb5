//! Synced mail at rest: a per-user mail key that seals messages, and the blind index that
//! keeps them searchable.
//!
//! ```text
//!   user's data key ── seals (purpose "gmail_mail_key", record = user id) ──► sealed mail key
//!        │                                                                  (connection row)
//!   mail key ── seals headers ("gmail_message_header") and bodies ("gmail_message_body"),
//!        │      record = Gmail message id
//!        └── HMAC-SHA256(mail key, "assistd/gmail/index/v1") = index key
//!                 └── HMAC-SHA256(index key, word)[..16] = blind index token of the word
//! ```
//!
//! A mail key of its own (rather than sealing mail under the data key directly) lets the
//! mail be destroyed alone: deleting the sealed mail key makes every sealed message and every
//! token meaningless, while the user's other secrets stay. Deleting the data key (account
//! deletion) destroys the mail key with the rest.
//!
//! What the index shows someone holding a copy of the database: which messages share a word
//! and how many distinct words each message has, never the words (the tokens are keyed
//! hashes; without the key a guessed word cannot be hashed to compare). Tokens differ between
//! users and between two mail keys of one user, so nothing links mailboxes.

use assistd_domain::UserId;
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::seal::KEY_LEN;
use crate::{CryptoError, DataKey, SealContext, Secret, open, seal};

/// Purpose of the mail key sealed under the user's data key.
pub const MAIL_KEY_PURPOSE: &str = "gmail_mail_key";
/// Purpose of a message's sealed header (subject, addresses, snippet, attachment list).
pub const MESSAGE_HEADER_PURPOSE: &str = "gmail_message_header";
/// Purpose of a message's sealed body.
pub const MESSAGE_BODY_PURPOSE: &str = "gmail_message_body";

/// Length of a blind index token in bytes.
pub const BLIND_INDEX_LEN: usize = 16;

/// Derives the index key from the mail key (domain separation: never used for anything else).
const INDEX_KEY_LABEL: &[u8] = b"assistd/gmail/index/v1";

/// The key version bound into what a mail key seals. A mail key is never replaced in place
/// (a new one comes with a new, empty copy of the mail), so its version is fixed.
const MAIL_KEY_SEAL_VERSION: u32 = 1;

/// A user's mail key: an AES-256 key that seals their synced messages. Like [`DataKey`] it is
/// never `Clone` or printed and is zeroized on drop; it is stored only sealed under the
/// user's data key ([`MailKey::wrap`]).
pub struct MailKey(DataKey);

impl std::fmt::Debug for MailKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailKey([redacted])")
    }
}

impl MailKey {
    /// A fresh random mail key.
    #[must_use]
    pub fn generate() -> Self {
        Self(DataKey::generate())
    }

    /// The mail key sealed under `owner`'s data key of version `key_version` (purpose
    /// [`MAIL_KEY_PURPOSE`], record = the owner's id), for storing in the connection row.
    #[must_use]
    pub fn wrap(&self, data_key: &DataKey, owner: UserId, key_version: u32) -> Vec<u8> {
        let record = owner.to_string();
        seal(
            data_key,
            &mail_key_context(owner, &record, key_version),
            self.0.expose_bytes(),
        )
    }

    /// Opens a mail key made by [`wrap`](Self::wrap) with the same data key, owner and version.
    ///
    /// # Errors
    /// [`CryptoError::InvalidCiphertext`] when it does not open (another user's, another data
    /// key or version, altered), [`CryptoError::Internal`] when it opens to no key.
    pub fn unwrap(
        data_key: &DataKey,
        owner: UserId,
        key_version: u32,
        sealed: &[u8],
    ) -> Result<Self, CryptoError> {
        let record = owner.to_string();
        let opened = open(
            data_key,
            &mail_key_context(owner, &record, key_version),
            sealed,
        )?;
        Ok(Self(DataKey::from_slice(opened.expose_secret())?))
    }

    /// The key of the user's blind index, derived from this mail key.
    #[must_use]
    pub fn index_key(&self) -> IndexKey {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_bytes()),
            INDEX_KEY_LABEL,
        );
        let bytes = Zeroizing::new(
            <[u8; KEY_LEN]>::try_from(derived.as_ref()).expect("HMAC-SHA256 gives 32 bytes"),
        );
        IndexKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes[..]))
    }

    /// Seals `plaintext` as `owner`'s `purpose` value of message `message_id` (use
    /// [`MESSAGE_HEADER_PURPOSE`] or [`MESSAGE_BODY_PURPOSE`]).
    #[must_use]
    pub fn seal(
        &self,
        owner: UserId,
        purpose: &str,
        message_id: &str,
        plaintext: &[u8],
    ) -> Vec<u8> {
        seal(
            &self.0,
            &message_context(owner, purpose, message_id),
            plaintext,
        )
    }

    /// Opens what [`seal`](Self::seal) made with the same owner, purpose and message id.
    ///
    /// # Errors
    /// [`CryptoError::InvalidCiphertext`] when it does not open here: another mail key (a
    /// destroyed one included), owner, purpose or message, or altered bytes.
    pub fn open(
        &self,
        owner: UserId,
        purpose: &str,
        message_id: &str,
        sealed: &[u8],
    ) -> Result<Secret, CryptoError> {
        open(
            &self.0,
            &message_context(owner, purpose, message_id),
            sealed,
        )
    }
}

fn mail_key_context(owner: UserId, record: &str, key_version: u32) -> SealContext<'_> {
    SealContext {
        owner,
        purpose: MAIL_KEY_PURPOSE,
        record,
        key_version,
    }
}

fn message_context<'a>(owner: UserId, purpose: &'a str, message_id: &'a str) -> SealContext<'a> {
    SealContext {
        owner,
        purpose,
        record: message_id,
        key_version: MAIL_KEY_SEAL_VERSION,
    }
}

/// The key of a user's blind index (derived from their mail key). Never printed; the key
/// material lives inside aws-lc, which cleanses it when the key is dropped.
pub struct IndexKey(hmac::Key);

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey([redacted])")
    }
}

/// The blind index token of `word` (already normalised: the same word must always be given
/// in the same form): the first 16 bytes of HMAC-SHA256 under the index key. 128 bits keep
/// accidental collisions out of reach (about 2^64 words before one is likely) at half the
/// storage of the full tag.
#[must_use]
pub fn blind_index(key: &IndexKey, word: &str) -> [u8; BLIND_INDEX_LEN] {
    let tag = hmac::sign(&key.0, word.as_bytes());
    let mut token = [0u8; BLIND_INDEX_LEN];
    token.copy_from_slice(&tag.as_ref()[..BLIND_INDEX_LEN]);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_key_opens_only_under_its_owner_data_key_and_version() {
        let data_key = DataKey::generate();
        let owner = UserId::new();
        let mail_key = MailKey::generate();
        let wrapped = mail_key.wrap(&data_key, owner, 1);
        let opened = MailKey::unwrap(&data_key, owner, 1, &wrapped).unwrap();
        assert!(opened.0.same_as(&mail_key.0));
        assert!(MailKey::unwrap(&data_key, UserId::new(), 1, &wrapped).is_err());
        assert!(MailKey::unwrap(&data_key, owner, 2, &wrapped).is_err());
        assert!(MailKey::unwrap(&DataKey::generate(), owner, 1, &wrapped).is_err());
        // A value of another purpose under the same data key is no mail key.
        let record = owner.to_string();
        let other = seal(
            &data_key,
            &SealContext {
                owner,
                purpose: "google_refresh_token",
                record: &record,
                key_version: 1,
            },
            &[7; KEY_LEN],
        );
        assert!(MailKey::unwrap(&data_key, owner, 1, &other).is_err());
    }

    #[test]
    fn messages_open_only_with_their_key_owner_purpose_and_id() {
        let owner = UserId::new();
        let key = MailKey::generate();
        let sealed = key.seal(
            owner,
            MESSAGE_BODY_PURPOSE,
            "18c2f0a1b2c3d4e5",
            b"canary body",
        );
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        let opened = key
            .open(owner, MESSAGE_BODY_PURPOSE, "18c2f0a1b2c3d4e5", &sealed)
            .unwrap();
        assert_eq!(opened.expose_secret(), b"canary body");
        assert!(
            key.open(owner, MESSAGE_HEADER_PURPOSE, "18c2f0a1b2c3d4e5", &sealed)
                .is_err()
        );
        assert!(
            key.open(owner, MESSAGE_BODY_PURPOSE, "18c2f0a1b2c3d4e6", &sealed)
                .is_err()
        );
        assert!(
            key.open(
                UserId::new(),
                MESSAGE_BODY_PURPOSE,
                "18c2f0a1b2c3d4e5",
                &sealed
            )
            .is_err()
        );
        // A new mail key (after the old one was destroyed) opens nothing the old one sealed.
        assert!(
            MailKey::generate()
                .open(owner, MESSAGE_BODY_PURPOSE, "18c2f0a1b2c3d4e5", &sealed)
                .is_err()
        );
    }

    #[test]
    fn tokens_are_stable_per_key_and_differ_across_keys_and_words() {
        let key = MailKey::generate();
        let index = key.index_key();
        let token = blind_index(&index, "invoice");
        assert_eq!(token, blind_index(&index, "invoice"));
        // The same mail key derives the same index key.
        assert_eq!(token, blind_index(&key.index_key(), "invoice"));
        assert_ne!(token, blind_index(&index, "invoices"));
        assert_ne!(token, blind_index(&index, "Invoice"));
        // Another user's (or a new) mail key gives other tokens for the same word.
        assert_ne!(
            token,
            blind_index(&MailKey::generate().index_key(), "invoice")
        );
        // The token is a keyed hash: not the word's plain SHA-256.
        use sha2::Digest as _;
        let plain = sha2::Sha256::digest(b"invoice");
        assert_ne!(&token[..], &plain[..BLIND_INDEX_LEN]);
    }

    #[test]
    fn the_index_key_is_derived_with_its_label() {
        // HMAC-SHA256(mail key, label) then HMAC-SHA256(index key, word), computed step by
        // step, matches.
        let key = MailKey::generate();
        let index_bytes = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.0.expose_bytes()),
            INDEX_KEY_LABEL,
        );
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, index_bytes.as_ref()),
            "héllo".as_bytes(),
        );
        assert_eq!(
            blind_index(&key.index_key(), "héllo"),
            expected.as_ref()[..BLIND_INDEX_LEN]
        );
    }

    #[test]
    fn keys_do_not_print() {
        let key = MailKey::generate();
        assert_eq!(format!("{key:?}"), "MailKey([redacted])");
        assert_eq!(format!("{:?}", key.index_key()), "IndexKey([redacted])");
    }
}
