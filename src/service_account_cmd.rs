//! `assistd admin service-account …`: create, list and revoke the accounts other backends
//! call assistd with, and sign a token with an account's key (for grpcurl and scripts).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use assistd::bearer::authenticated_methods;
use assistd::config::Config;
use assistd::server::{audit_log, open_store};
use assistd_core::ServiceAccounts;
use assistd_domain::service_account::{NewServiceAccount, ServiceAccount, UserScope};
use assistd_domain::{ServiceAccountId, SystemClock, UserId};
use assistd_identity::{MAX_SERVICE_TOKEN_TTL, SigningKey, sign_service_token};
use clap::Subcommand;

/// Service account tasks.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceAccountCommand {
    /// Create an account and print its id and private key (PKCS#8 PEM). The key is shown only
    /// this once: assistd keeps the public half.
    Create {
        /// A name for people: letters, digits, '-', '_', '.'; unique.
        #[arg(long)]
        name: String,
        /// An RPC it may call, as a full path (repeatable), e.g.
        /// /assistd.chat.v1.ChatService/ListSessions. `list-rpcs` prints them all.
        #[arg(long = "allow-rpc", value_name = "PATH", required = true)]
        allow_rpcs: Vec<String>,
        /// A user it may act for (repeatable).
        #[arg(long = "user", value_name = "USER_ID", conflicts_with = "any_user")]
        users: Vec<UserId>,
        /// Let it act for any user with an account.
        #[arg(long)]
        any_user: bool,
        /// Write the private key to this file (mode 0600, must not exist) instead of stdout.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// List every account, revoked ones too.
    List,
    /// Revoke an account: its next call is refused, on every server.
    Revoke {
        /// The account's id.
        #[arg(long)]
        id: ServiceAccountId,
    },
    /// Print every RPC an account may be allowed to call.
    ListRpcs,
    /// Sign a token with an account's private key, as the service would, and print it: for
    /// grpcurl and scripts. Reads no database.
    SignToken {
        /// The account's id.
        #[arg(long)]
        id: ServiceAccountId,
        /// The account's private key (PKCS#8 PEM), as `create` printed it.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// How long the token lives (at most 5m).
        #[arg(long, default_value = "5m", value_parser = humantime_serde::re::humantime::parse_duration)]
        ttl: Duration,
    },
}

/// Runs one service account task.
pub(crate) async fn run(
    config: &Config,
    command: ServiceAccountCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ServiceAccountCommand::Create {
            name,
            allow_rpcs,
            users,
            any_user,
            key_out,
        } => {
            anyhow::ensure!(
                any_user || !users.is_empty(),
                "say which users the account may act for: --user USER_ID (repeatable) or --any-user"
            );
            let scope = if any_user {
                UserScope::Any
            } else {
                UserScope::Listed(users)
            };
            let known = authenticated_methods();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let new = NewServiceAccount::new(&name, &allow_rpcs, scope, &known)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            if let Some(path) = &key_out {
                anyhow::ensure!(
                    !path.exists(),
                    "{} exists; the key file must be new",
                    path.display()
                );
            }
            let (store, accounts) = accounts(config).await?;
            let created = accounts.create(&new).await;
            store.close().await;
            let created = created.map_err(|err| anyhow::anyhow!("{err}"))?;
            println!("{}", created.account.id);
            let created_id = created.account.id;
            let pem = created.private_key.expose_pkcs8_pem();
            match key_out {
                Some(path) => {
                    let (_, created) = assistd_domain::secret_file::read_or_create(&path, || {
                        zeroize::Zeroizing::new(pem.as_bytes().to_vec())
                    })
                    .with_context(|| format!("writing {}", path.display()))?;
                    anyhow::ensure!(
                        created,
                        "{} appeared meanwhile and was left as it was; the new key is lost: revoke {} and create another",
                        path.display(),
                        created_id
                    );
                    eprintln!("private key written to {}", path.display());
                }
                None => print!("{}", *pem),
            }
            eprintln!(
                "service account {} ({}) created; the private key is not stored and will not be shown again",
                created.account.name, created.account.id
            );
            Ok(ExitCode::SUCCESS)
        }
        ServiceAccountCommand::List => {
            let (store, accounts) = accounts(config).await?;
            let listed = accounts.list().await;
            store.close().await;
            for account in listed.map_err(|err| anyhow::anyhow!("{err}"))? {
                println!("{}", describe(&account));
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceAccountCommand::Revoke { id } => {
            let (store, accounts) = accounts(config).await?;
            let revoked = accounts.revoke(id).await;
            store.close().await;
            revoked.map_err(|err| anyhow::anyhow!("{err}"))?;
            println!("service account {id} revoked");
            Ok(ExitCode::SUCCESS)
        }
        ServiceAccountCommand::ListRpcs => {
            for method in authenticated_methods() {
                println!("{method}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceAccountCommand::SignToken { id, key_file, ttl } => {
            anyhow::ensure!(
                !ttl.is_zero() && ttl <= MAX_SERVICE_TOKEN_TTL,
                "--ttl must be between 1s and 5m"
            );
            let key = SigningKey::load(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            let token =
                sign_service_token(&key, id, &config.auth.audience, ttl, chrono::Utc::now())
                    .map_err(|err| anyhow::anyhow!("{err}"))?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn accounts(config: &Config) -> anyhow::Result<(assistd_store::Store, ServiceAccounts)> {
    let store = open_store(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    let audit = audit_log(config, &store)?;
    let accounts = ServiceAccounts::new(
        store.clone(),
        audit,
        Arc::new(SystemClock),
        config.auth.audience.clone(),
    );
    Ok((store, accounts))
}

/// One line per account: id, name, state, users, RPCs.
fn describe(account: &ServiceAccount) -> String {
    let state = match account.revoked_at {
        Some(at) => format!("revoked {}", at.to_rfc3339()),
        None => "active".to_owned(),
    };
    let users = match &account.users {
        UserScope::Any => "any user".to_owned(),
        UserScope::Listed(users) => users
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    format!(
        "{}\t{}\t{}\tcreated {}\tusers: {}\trpcs: {}",
        account.id,
        account.name,
        state,
        account.created_at.to_rfc3339(),
        users,
        account.allowed_methods.join(",")
    )
}
