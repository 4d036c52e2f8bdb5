//! Sign-in: users keyed by their identity provider's (issuer, subject), single-use login
//! attempts, ID tokens already accepted, device sessions with their rotating refresh tokens,
//! and the sealed Google tokens of each account.
//!
//! Nothing here holds a credential in the clear: login attempts keep a hash of their `state`
//! (the PKCE verifier and nonce are derived from it with a server key, never stored), refresh
//! tokens and used ID tokens are kept as SHA-256 hashes, Google tokens are sealed with the
//! user's data key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            string_len_null(Users::OidcIssuer, 255),
            string_len_null(Users::OidcSubject, 255),
            boolean(Users::EmailVerified).default(false).to_owned(),
            string_len_null(Users::PictureUrl, 2048),
            timestamp_with_time_zone_null(Users::LastSignInAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_oidc_identity")
                    .table(Users::Table)
                    .col(Users::OidcIssuer)
                    .col(Users::OidcSubject)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoginAttempts::Table)
                    .if_not_exists()
                    .col(string_len(LoginAttempts::StateHash, 64).primary_key())
                    .col(string_len(LoginAttempts::KeyId, 64))
                    .col(string_len(LoginAttempts::RedirectUri, 2048))
                    .col(boolean(LoginAttempts::RequestGmail))
                    .col(timestamp_with_time_zone(LoginAttempts::CreatedAt))
                    .col(timestamp_with_time_zone(LoginAttempts::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_login_attempts_expires")
                    .table(LoginAttempts::Table)
                    .col(LoginAttempts::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UsedIdTokens::Table)
                    .if_not_exists()
                    .col(string_len(UsedIdTokens::TokenHash, 64).primary_key())
                    .col(timestamp_with_time_zone(UsedIdTokens::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_used_id_tokens_expires")
                    .table(UsedIdTokens::Table)
                    .col(UsedIdTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthSessions::Table)
                    .if_not_exists()
                    .col(uuid(AuthSessions::Id).primary_key())
                    .col(uuid(AuthSessions::UserId))
                    .col(string_len(AuthSessions::DeviceName, 64).default(""))
                    .col(string_len(AuthSessions::UserAgent, 512).default(""))
                    .col(string_len(AuthSessions::IpAddress, 64).default(""))
                    .col(string_len(AuthSessions::SignInMethod, 32))
                    .col(timestamp_with_time_zone(AuthSessions::CreatedAt))
                    .col(timestamp_with_time_zone(AuthSessions::LastUsedAt))
                    .col(timestamp_with_time_zone(AuthSessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AuthSessions::RevokedAt))
                    .col(string_len_null(AuthSessions::RevokedReason, 32))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_auth_sessions_user")
                            .from(AuthSessions::Table, AuthSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auth_sessions_user_created")
                    .table(AuthSessions::Table)
                    .col(AuthSessions::UserId)
                    .col(AuthSessions::CreatedAt)
                    .col(AuthSessions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(string_len(RefreshTokens::TokenHash, 64).primary_key())
                    .col(uuid(RefreshTokens::SessionId))
                    .col(uuid(RefreshTokens::UserId))
                    .col(string_len(RefreshTokens::KeyId, 64))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .col(string_len_null(RefreshTokens::SuccessorHash, 64))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_tokens_session")
                            .from(RefreshTokens::Table, RefreshTokens::SessionId)
                            .to(AuthSessions::Table, AuthSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_tokens_user")
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_session")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::SessionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_user")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GoogleLinks::Table)
                    .if_not_exists()
                    .col(uuid(GoogleLinks::UserId).primary_key())
                    .col(blob_null(GoogleLinks::SealedAccessToken))
                    .col(timestamp_with_time_zone_null(GoogleLinks::AccessExpiresAt))
                    .col(blob_null(GoogleLinks::SealedRefreshToken))
                    .col(text(GoogleLinks::Scopes).default(""))
                    .col(boolean(GoogleLinks::ReauthRequired).default(false))
                    .col(timestamp_with_time_zone(GoogleLinks::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_google_links_user")
                            .from(GoogleLinks::Table, GoogleLinks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GoogleLinks::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            AuthSessions::Table.into_iden(),
            UsedIdTokens::Table.into_iden(),
            LoginAttempts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_oidc_identity")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Users::LastSignInAt,
            Users::PictureUrl,
            Users::EmailVerified,
            Users::OidcSubject,
            Users::OidcIssuer,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    OidcIssuer,
    OidcSubject,
    EmailVerified,
    PictureUrl,
    LastSignInAt,
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    StateHash,
    KeyId,
    RedirectUri,
    RequestGmail,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum UsedIdTokens {
    Table,
    TokenHash,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuthSessions {
    Table,
    Id,
    UserId,
    DeviceName,
    UserAgent,
    IpAddress,
    SignInMethod,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    SessionId,
    UserId,
    KeyId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    SuccessorHash,
}

#[derive(DeriveIden)]
enum GoogleLinks {
    Table,
    UserId,
    SealedAccessToken,
    AccessExpiresAt,
    SealedRefreshToken,
    Scopes,
    ReauthRequired,
    UpdatedAt,
}
