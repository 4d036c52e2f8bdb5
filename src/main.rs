//! The `assistd` command line: `serve`, `migrate` and `admin` tasks.

use std::path::PathBuf;

use anyhow::Context as _;
use assistd::config::Config;
use assistd::server::{Application, access_tokens, open_store};
use assistd_domain::UserId;
use clap::{Parser, Subcommand};

/// assistd: the gRPC backend of a personal AI assistant.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see assistd.example.toml). ASSISTD_* variables override it.
    #[arg(long, global = true, env = "ASSISTD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC, grpc-web, reflection and health on one port until SIGINT/SIGTERM.
    Serve {
        /// Do not apply pending database migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Operator tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user account and print its id (until Google sign-in creates accounts).
    CreateUser {
        /// Name shown in clients.
        #[arg(long)]
        display_name: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Print a fresh access token for a user, for grpcurl and scripts. Anyone holding it acts
    /// as that user until it expires.
    IssueToken {
        /// The user's id.
        #[arg(long)]
        user_id: UserId,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    assistd::telemetry::init(&config.log);
    match cli.command {
        Command::Serve { no_migrate } => {
            if no_migrate {
                config.database.migrate_on_start = false;
            }
            let app = Application::build(config).await?;
            let shutdown = app.shutdown();
            tokio::spawn(async move {
                wait_for_signal().await;
                shutdown.cancel();
            });
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            store
                .migrate()
                .await
                .context("applying database migrations")?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser {
            display_name,
            email,
        }) => {
            let store = open_store(&config).await?;
            store
                .migrate()
                .await
                .context("applying database migrations")?;
            let user = store
                .users()
                .create(assistd_store::NewUser {
                    display_name,
                    email,
                })
                .await?;
            store.close().await;
            println!("{}", user.id);
            Ok(())
        }
        Command::Admin(AdminCommand::IssueToken { user_id }) => {
            let store = open_store(&config).await?;
            let user = store.users().get(user_id).await?;
            store.close().await;
            let issued = access_tokens(&config)?.issue(user.id);
            println!("{}", issued.token);
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
