//! Sign-in state: users keyed by (issuer, subject), single-use login attempts, ID tokens
//! already accepted, device sessions, their refresh tokens and the sealed Google tokens.
//!
//! Everything that is a credential is stored as a SHA-256 hash (hex) or sealed by the caller;
//! this module never sees a raw refresh token, PKCE verifier or Google token.

use assistd_domain::auth::{AuthSession, SignInMethod, User};
use assistd_domain::{AuthSessionId, Error, Result, UserId};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::users;
use crate::entity::{auth_sessions, google_links, login_attempts, refresh_tokens, used_id_tokens};
use crate::{Store, db_error};

/// A redirect sign-in that was begun and not yet finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// SHA-256 (hex) of the `state` handed to the browser.
    pub state_hash: String,
    /// Id of the server key the PKCE verifier and nonce were derived with.
    pub key_id: String,
    /// The redirect URI the authorization request named.
    pub redirect_uri: String,
    /// Whether Gmail access was asked for.
    pub request_gmail: bool,
    /// When the attempt began.
    pub created_at: DateTime<Utc>,
    /// When it can no longer be finished.
    pub expires_at: DateTime<Utc>,
}

/// What the identity provider says about the person signing in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcProfile {
    /// The ID token's `iss`, normalised by the caller.
    pub issuer: String,
    /// The ID token's `sub`: with the issuer, the account's identity.
    pub subject: String,
    /// Email address, if sent.
    pub email: Option<String>,
    /// Whether the provider verified the email address.
    pub email_verified: bool,
    /// Profile name, if sent; becomes the display name of a new account.
    pub name: Option<String>,
    /// Profile picture URL, if sent.
    pub picture: Option<String>,
}

impl From<auth_sessions::Model> for AuthSession {
    fn from(row: auth_sessions::Model) -> Self {
        Self {
            id: AuthSessionId::from_uuid(row.id),
            user: UserId::from_uuid(row.user_id),
            device_name: row.device_name,
            user_agent: row.user_agent,
            ip_address: row.ip_address,
            method: SignInMethod::from_stored(&row.sign_in_method),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// A session to open.
#[derive(Clone, Debug)]
pub struct NewAuthSession {
    /// Whose session.
    pub user: UserId,
    /// Client label, at most 64 characters.
    pub device_name: String,
    /// User agent, at most 512 characters.
    pub user_agent: String,
    /// Client address.
    pub ip_address: String,
    /// How it is opened.
    pub method: SignInMethod,
    /// Now.
    pub now: DateTime<Utc>,
    /// The absolute end.
    pub expires_at: DateTime<Utc>,
}

/// One refresh token of a session, by hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The session (token family) it belongs to.
    pub session_id: AuthSessionId,
    /// The session's user.
    pub user: UserId,
    /// Id of the server key its successor is derived with.
    pub key_id: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it expires unused.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// Hash of the token it was exchanged for.
    pub successor_hash: Option<String>,
}

impl From<refresh_tokens::Model> for RefreshTokenRecord {
    fn from(row: refresh_tokens::Model) -> Self {
        Self {
            token_hash: row.token_hash,
            session_id: AuthSessionId::from_uuid(row.session_id),
            user: UserId::from_uuid(row.user_id),
            key_id: row.key_id,
            created_at: row.created_at,
            expires_at: row.expires_at,
            used_at: row.used_at,
            successor_hash: row.successor_hash,
        }
    }
}

/// A user's Google OAuth tokens, sealed with their data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleLink {
    /// Whose tokens.
    pub user: UserId,
    /// The sealed access token.
    pub sealed_access_token: Option<Vec<u8>>,
    /// When the access token expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// The sealed refresh token, if Google ever sent one.
    pub sealed_refresh_token: Option<Vec<u8>>,
    /// Granted scopes, space-separated.
    pub scopes: String,
    /// Google refused the refresh token: the user must sign in again with consent.
    pub reauth_required: bool,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<google_links::Model> for GoogleLink {
    fn from(row: google_links::Model) -> Self {
        Self {
            user: UserId::from_uuid(row.user_id),
            sealed_access_token: row.sealed_access_token,
            access_expires_at: row.access_expires_at,
            sealed_refresh_token: row.sealed_refresh_token,
            scopes: row.scopes,
            reauth_required: row.reauth_required,
            updated_at: row.updated_at,
        }
    }
}

/// Reads and writes sign-in state.
#[derive(Clone, Debug)]
pub struct AuthRepository {
    store: Store,
}

impl Store {
    /// The sign-in repository.
    #[must_use]
    pub fn auth(&self) -> AuthRepository {
        AuthRepository {
            store: self.clone(),
        }
    }
}

impl AuthRepository {
    /// Stores a login attempt.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_login_attempt(&self, attempt: &LoginAttempt) -> Result<()> {
        login_attempts::Entity::insert(login_attempts::ActiveModel {
            state_hash: Set(attempt.state_hash.clone()),
            key_id: Set(attempt.key_id.clone()),
            redirect_uri: Set(attempt.redirect_uri.clone()),
            request_gmail: Set(attempt.request_gmail),
            created_at: Set(attempt.created_at),
            expires_at: Set(attempt.expires_at),
        })
        .exec_without_returning(self.store.connection())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Removes the login attempt with this state hash and returns it if it was still valid at
    /// `now`. Exactly one of any number of concurrent callers gets it; an unknown, expired or
    /// already taken attempt gives `None`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn take_login_attempt(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LoginAttempt>> {
        let db = self.store.connection();
        let Some(row) = login_attempts::Entity::find_by_id(state_hash.to_owned())
            .one(db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let deleted = login_attempts::Entity::delete_by_id(state_hash.to_owned())
            .exec(db)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected != 1 || row.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(LoginAttempt {
            state_hash: row.state_hash,
            key_id: row.key_id,
            redirect_uri: row.redirect_uri,
            request_gmail: row.request_gmail,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }))
    }

    /// Deletes expired login attempts and expired used-ID-token records.
    ///
    /// # Errors
    /// The database failed.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let db = self.store.connection();
        let attempts = login_attempts::Entity::delete_many()
            .filter(login_attempts::Column::ExpiresAt.lte(now))
            .exec(db)
            .await
            .map_err(db_error)?;
        let tokens = used_id_tokens::Entity::delete_many()
            .filter(used_id_tokens::Column::ExpiresAt.lte(now))
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(attempts.rows_affected + tokens.rows_affected)
    }

    /// Records an ID token (by hash) as accepted; `false` when it already was.
    ///
    /// # Errors
    /// The database failed.
    pub async fn mark_id_token_used<C: ConnectionTrait>(
        &self,
        db: &C,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let inserted = used_id_tokens::Entity::insert(used_id_tokens::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            OnConflict::column(used_id_tokens::Column::TokenHash)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
        Ok(inserted == 1)
    }

    /// Creates the account for `profile` or updates the existing one (email, verification,
    /// picture, last sign-in; never the display name, which belongs to the user after the
    /// first sign-in). Returns the account and whether it was created.
    ///
    /// # Errors
    /// The database failed.
    pub async fn upsert_oidc_user<C: ConnectionTrait>(
        &self,
        db: &C,
        profile: &OidcProfile,
        now: DateTime<Utc>,
    ) -> Result<(User, bool)> {
        // Insert first: of two first sign-ins at once, one inserts and the other finds the
        // row, instead of both finding nothing and one failing on the unique index.
        let id = UserId::new();
        let inserted = users::Entity::insert(users::ActiveModel {
            id: Set(id.as_uuid()),
            display_name: Set(profile.name.clone()),
            email: Set(profile.email.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            oidc_issuer: Set(Some(profile.issuer.clone())),
            oidc_subject: Set(Some(profile.subject.clone())),
            email_verified: Set(profile.email_verified),
            picture_url: Set(profile.picture.clone()),
            last_sign_in_at: Set(Some(now)),
        })
        .on_conflict(
            OnConflict::columns([users::Column::OidcIssuer, users::Column::OidcSubject])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
        if inserted == 1 {
            let user = self.store.users().get_in(db, id).await?;
            return Ok((user, true));
        }
        let existing = users::Entity::find()
            .filter(users::Column::OidcIssuer.eq(profile.issuer.as_str()))
            .filter(users::Column::OidcSubject.eq(profile.subject.as_str()))
            .one(db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("an account vanished while signing in"))?;
        users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(profile.email.clone()))
            .col_expr(
                users::Column::EmailVerified,
                Expr::value(profile.email_verified),
            )
            .col_expr(
                users::Column::PictureUrl,
                Expr::value(profile.picture.clone()),
            )
            .col_expr(users::Column::LastSignInAt, Expr::value(now))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(existing.id))
            .exec(db)
            .await
            .map_err(db_error)?;
        let user = self
            .store
            .users()
            .get_in(db, UserId::from_uuid(existing.id))
            .await?;
        Ok((user, false))
    }

    /// Opens a session.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_session<C: ConnectionTrait>(
        &self,
        db: &C,
        new: &NewAuthSession,
    ) -> Result<AuthSession> {
        let row = auth_sessions::Model {
            id: AuthSessionId::new().as_uuid(),
            user_id: new.user.as_uuid(),
            device_name: new.device_name.clone(),
            user_agent: new.user_agent.clone(),
            ip_address: new.ip_address.clone(),
            sign_in_method: new.method.as_str().to_owned(),
            created_at: new.now,
            last_used_at: new.now,
            expires_at: new.expires_at,
            revoked_at: None,
            revoked_reason: None,
        };
        auth_sessions::Entity::insert(row.clone().into_active_model())
            .exec_without_returning(db)
            .await
            .map_err(db_error)?;
        Ok(row.into())
    }

    /// The session with this id, whoever's it is, revoked or not.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session<C: ConnectionTrait>(
        &self,
        db: &C,
        id: AuthSessionId,
    ) -> Result<Option<AuthSession>> {
        Ok(auth_sessions::Entity::find_by_id(id.as_uuid())
            .one(db)
            .await
            .map_err(db_error)?
            .map(AuthSession::from))
    }

    /// The user's active sessions, newest first by (creation time, id), strictly after
    /// `after` when given.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, AuthSessionId)>,
        limit: u64,
    ) -> Result<Vec<AuthSession>> {
        let mut query = auth_sessions::Entity::find()
            .filter(auth_sessions::Column::UserId.eq(user.as_uuid()))
            .filter(auth_sessions::Column::RevokedAt.is_null())
            .filter(auth_sessions::Column::ExpiresAt.gt(now));
        if let Some((created_at, id)) = after {
            query = query.filter(
                Condition::any()
                    .add(auth_sessions::Column::CreatedAt.lt(created_at))
                    .add(
                        Condition::all()
                            .add(auth_sessions::Column::CreatedAt.eq(created_at))
                            .add(auth_sessions::Column::Id.lt(id.as_uuid())),
                    ),
            );
        }
        Ok(query
            .order_by_desc(auth_sessions::Column::CreatedAt)
            .order_by_desc(auth_sessions::Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(AuthSession::from)
            .collect())
    }

    /// Revokes the user's session if it is active; `false` when there is no such active
    /// session of theirs.
    ///
    /// # Errors
    /// The database failed.
    pub async fn revoke_session<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        id: AuthSessionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let updated = auth_sessions::Entity::update_many()
            .col_expr(auth_sessions::Column::RevokedAt, Expr::value(now))
            .col_expr(auth_sessions::Column::RevokedReason, Expr::value(reason))
            .filter(auth_sessions::Column::Id.eq(id.as_uuid()))
            .filter(auth_sessions::Column::UserId.eq(user.as_uuid()))
            .filter(auth_sessions::Column::RevokedAt.is_null())
            .filter(auth_sessions::Column::ExpiresAt.gt(now))
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(updated.rows_affected == 1)
    }

    /// Revokes every active session of the user except `keep`; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn revoke_other_sessions<C: ConnectionTrait>(
        &self,
        db: &C,
        user: UserId,
        keep: Option<AuthSessionId>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut update = auth_sessions::Entity::update_many()
            .col_expr(auth_sessions::Column::RevokedAt, Expr::value(now))
            .col_expr(auth_sessions::Column::RevokedReason, Expr::value(reason))
            .filter(auth_sessions::Column::UserId.eq(user.as_uuid()))
            .filter(auth_sessions::Column::RevokedAt.is_null())
            .filter(auth_sessions::Column::ExpiresAt.gt(now));
        if let Some(keep) = keep {
            update = update.filter(auth_sessions::Column::Id.ne(keep.as_uuid()));
        }
        Ok(update.exec(db).await.map_err(db_error)?.rows_affected)
    }

    /// Records a refresh of the session: last use, user agent and address.
    ///
    /// # Errors
    /// The database failed.
    pub async fn touch_session<C: ConnectionTrait>(
        &self,
        db: &C,
        id: AuthSessionId,
        user_agent: &str,
        ip_address: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        auth_sessions::Entity::update_many()
            .col_expr(auth_sessions::Column::LastUsedAt, Expr::value(now))
            .col_expr(auth_sessions::Column::UserAgent, Expr::value(user_agent))
            .col_expr(auth_sessions::Column::IpAddress, Expr::value(ip_address))
            .filter(auth_sessions::Column::Id.eq(id.as_uuid()))
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Stores a new refresh token (by hash).
    ///
    /// # Errors
    /// The database failed.
    pub async fn insert_refresh_token<C: ConnectionTrait>(
        &self,
        db: &C,
        record: &RefreshTokenRecord,
    ) -> Result<()> {
        refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
            token_hash: Set(record.token_hash.clone()),
            session_id: Set(record.session_id.as_uuid()),
            user_id: Set(record.user.as_uuid()),
            key_id: Set(record.key_id.clone()),
            created_at: Set(record.created_at),
            expires_at: Set(record.expires_at),
            used_at: Set(record.used_at),
            successor_hash: Set(record.successor_hash.clone()),
        })
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// The refresh token with this hash.
    ///
    /// # Errors
    /// The database failed.
    pub async fn refresh_token<C: ConnectionTrait>(
        &self,
        db: &C,
        token_hash: &str,
    ) -> Result<Option<RefreshTokenRecord>> {
        Ok(refresh_tokens::Entity::find_by_id(token_hash.to_owned())
            .one(db)
            .await
            .map_err(db_error)?
            .map(RefreshTokenRecord::from))
    }

    /// Marks the token used and names its successor, if it was still unused; `true` when this
    /// call used it. Of concurrent callers exactly one gets `true`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn consume_refresh_token<C: ConnectionTrait>(
        &self,
        db: &C,
        token_hash: &str,
        successor_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let updated = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
            .col_expr(
                refresh_tokens::Column::SuccessorHash,
                Expr::value(successor_hash),
            )
            .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .exec(db)
            .await
            .map_err(db_error)?;
        Ok(updated.rows_affected == 1)
    }

    /// The user's Google tokens, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn google_link(&self, user: UserId) -> Result<Option<GoogleLink>> {
        Ok(google_links::Entity::find_by_id(user.as_uuid())
            .one(self.store.connection())
            .await
            .map_err(db_error)?
            .map(GoogleLink::from))
    }

    /// Stores the user's Google tokens. A `None` refresh token keeps the stored one (Google
    /// sends it only at the first consent).
    ///
    /// # Errors
    /// The database failed.
    pub async fn save_google_link<C: ConnectionTrait>(
        &self,
        db: &C,
        link: &GoogleLink,
    ) -> Result<()> {
        let mut update_columns = vec![
            google_links::Column::SealedAccessToken,
            google_links::Column::AccessExpiresAt,
            google_links::Column::Scopes,
            google_links::Column::ReauthRequired,
            google_links::Column::UpdatedAt,
        ];
        if link.sealed_refresh_token.is_some() {
            update_columns.push(google_links::Column::SealedRefreshToken);
        }
        google_links::Entity::insert(google_links::ActiveModel {
            user_id: Set(link.user.as_uuid()),
            sealed_access_token: Set(link.sealed_access_token.clone()),
            access_expires_at: Set(link.access_expires_at),
            sealed_refresh_token: Set(link.sealed_refresh_token.clone()),
            scopes: Set(link.scopes.clone()),
            reauth_required: Set(link.reauth_required),
            updated_at: Set(link.updated_at),
        })
        .on_conflict(
            OnConflict::column(google_links::Column::UserId)
                .update_columns(update_columns)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Deletes the user's Google tokens; returns whether there were any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_google_link(&self, user: UserId) -> Result<bool> {
        let deleted = google_links::Entity::delete_by_id(user.as_uuid())
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected > 0)
    }

    /// Marks the user's Google link as needing a new consent.
    ///
    /// # Errors
    /// NOT_FOUND when the user has no Google link; the database failed.
    pub async fn mark_google_reauth_required(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let updated = google_links::Entity::update_many()
            .col_expr(google_links::Column::ReauthRequired, Expr::value(true))
            .col_expr(google_links::Column::UpdatedAt, Expr::value(now))
            .filter(google_links::Column::UserId.eq(user.as_uuid()))
            .exec(self.store.connection())
            .await
            .map_err(db_error)?;
        if updated.rows_affected == 0 {
            return Err(Error::NotFound {
                resource: "google link",
                id: user.to_string(),
            });
        }
        Ok(())
    }
}
