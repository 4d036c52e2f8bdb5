//! The `assistd` command line: `serve`, `dev`, `migrate` and `admin` tasks.

mod dev;
mod export_cmd;
mod service_account_cmd;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assistd::config::{Config, KekConfig, KekProvider};
use assistd::server::{Application, access_tokens, audit_log, keyring, open_store};
use assistd_core::{RotationProgress, rotate_data_keys};
use assistd_domain::UserId;
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Serve for frontend development: SQLite in ./dev-data (or DATABASE_URL), CORS for a Vite
    /// dev server, an embedded OpenID provider where any email signs in, and a local model
    /// speaking the Gemini API. Loopback only. Reads no configuration file and no ASSISTD_*
    /// variable. For development only: never in production.
    Dev(dev::DevArgs),
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
    /// Re-wrap every user's data key under the current key-encryption key ([keys.kek]),
    /// unwrapping each with the KEK that wrapped it ([keys.kek] or one of [[keys.previous]]).
    /// Sealed secrets are not touched. Safe to interrupt and to run again: a second run
    /// re-wraps only what is left. Configure every server with both KEKs before running it.
    RotateKek {
        /// Data keys read per database query.
        #[arg(long, default_value_t = 500, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
        batch_size: u64,
    },
    /// Walk the audit log's hash chain and check its head. Exits 0 when it is intact, printing
    /// the row count and, on stderr, the head (sequence number and hash); 2 naming the first
    /// row that was edited, deleted, inserted or reordered, or a rewritten head. Record the
    /// head outside the database: rolling the log back to an earlier genuine head is only
    /// noticed by comparing with such a record (that row must still carry that hash).
    VerifyAudit,
    /// Accounts other backends call assistd with, as themselves.
    #[command(subcommand)]
    ServiceAccount(service_account_cmd::ServiceAccountCommand),
    /// Export everything a user owns (NDJSON, format assistd.export v1, as ExportData sends
    /// it) to a new file with mode 0600, or to stdout. Audited.
    ExportUser(export_cmd::ExportUserArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let mut config = if matches!(cli.command, Command::Dev(_)) {
        anyhow::ensure!(
            cli.config.is_none(),
            "assistd dev reads no configuration file (--config / ASSISTD_CONFIG): it runs on the \
             defaults, its own flags and DATABASE_URL only, so that no production setting reaches \
             a development server"
        );
        Config::for_development()
    } else {
        Config::load(cli.config.as_deref())?
    };
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
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => dev::run(config, args).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            store
                .migrate()
                .await
                .context("applying database migrations")?;
            store.close().await;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::IssueToken { user_id }) => {
            let store = open_store(&config).await?;
            let user = store.users().get(user_id).await?;
            store.close().await;
            let issued = access_tokens(&config)?.issue(user.id);
            println!("{}", issued.token);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::RotateKek { batch_size }) => {
            rotate_kek(&config, batch_size).await
        }
        Command::Admin(AdminCommand::VerifyAudit) => verify_audit(&config).await,
        Command::Admin(AdminCommand::ServiceAccount(command)) => {
            service_account_cmd::run(&config, command).await
        }
        Command::Admin(AdminCommand::ExportUser(args)) => export_cmd::run(&config, args).await,
    }
}

/// `admin rotate-kek`: re-wraps every data key under `[keys.kek]` and prints the count.
async fn rotate_kek(config: &Config, batch_size: u64) -> anyhow::Result<ExitCode> {
    ensure_master_key_exists(config, "keys.kek", &config.keys.kek)?;
    for (index, kek) in config.keys.previous.iter().enumerate() {
        ensure_master_key_exists(config, &format!("keys.previous[{index}]"), kek)?;
    }
    let keyring = keyring(config).await?;
    let store = open_store(config).await?;
    let mut display = ProgressDisplay::new(keyring.current().id());
    let result = rotate_data_keys(&store, &keyring, batch_size, |progress| {
        display.update(progress);
    })
    .await;
    display.finish(result.is_ok());
    store.close().await;
    let report = result?;
    println!(
        "re-wrapped {} data keys in {:.1} s ({} already under {})",
        report.rewrapped,
        report.elapsed.as_secs_f64(),
        report.already_current,
        report.kek_id
    );
    if report.changed_meanwhile > 0 {
        eprintln!(
            "{} data keys changed while being re-wrapped (another run, or shredded) and were left as they were",
            report.changed_meanwhile
        );
    }
    if report.remaining > 0 {
        eprintln!(
            "warning: {} data keys were created under another key-encryption key during the run; once every server has [keys.kek] = {}, run rotate-kek again",
            report.remaining, report.kek_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to start when a local master key file is missing, rather than letting the keyring
/// generate one: a new current KEK that no server knows would make every re-wrapped key
/// unreadable to them, and a new "previous" KEK opens nothing.
fn ensure_master_key_exists(config: &Config, name: &str, kek: &KekConfig) -> anyhow::Result<()> {
    if kek.provider != KekProvider::Local || !kek.master_key.is_empty() {
        return Ok(());
    }
    let path = config.master_key_file(kek);
    anyhow::ensure!(
        path.exists(),
        "{name}: the master key file {} does not exist; rotate-kek does not generate keys: configure the servers with the new key-encryption key (as [keys.kek] or [[keys.previous]]) and start them first, or point {name}.master_key_file at the existing key",
        path.display()
    );
    Ok(())
}

/// Shows rotation progress on stderr: a progress bar on a terminal, a plain line every few
/// seconds otherwise (logs, CI).
struct ProgressDisplay {
    kek_id: String,
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    last_line: Option<Instant>,
}

/// How often the plain progress line is printed when stderr is not a terminal.
const PROGRESS_LINE_INTERVAL: Duration = Duration::from_secs(2);

impl ProgressDisplay {
    fn new(kek_id: &str) -> Self {
        Self {
            kek_id: kek_id.to_owned(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    fn update(&mut self, progress: RotationProgress) {
        let RotationProgress { done, total } = progress;
        if self.last_line.is_none() {
            eprintln!(
                "rotate-kek: {total} data keys to re-wrap under {}",
                self.kek_id
            );
            self.last_line = Some(Instant::now());
            if self.terminal {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{wide_bar} {pos}/{len} data keys ({rate}/s, {eta} left)",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .with_key(
                        "rate",
                        |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                            let _ = write!(out, "{:.0}", state.per_sec());
                        },
                    ),
                );
                self.bar = Some(bar);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total.max(done));
            bar.set_position(done);
        } else if done > 0
            && self
                .last_line
                .is_some_and(|last| last.elapsed() >= PROGRESS_LINE_INTERVAL)
        {
            eprintln!("rotate-kek: {done}/{total} data keys re-wrapped");
            self.last_line = Some(Instant::now());
        }
    }

    /// Clears the bar after success (the count follows on stdout); leaves it where it stopped
    /// after a failure.
    fn finish(&self, succeeded: bool) {
        if let Some(bar) = &self.bar {
            if succeeded {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
    }
}

/// `admin verify-audit`: exit 0 with the row count when the chain is intact, 2 with the first
/// break otherwise. On success the head (sequence number and full hash) goes to stderr, so
/// stdout keeps its one-line form; the operator records it outside the database, because a
/// rollback to an earlier genuine head cannot be detected from inside it.
async fn verify_audit(config: &Config) -> anyhow::Result<ExitCode> {
    let key_file = config.audit_chain_key_file();
    // Loading the key would otherwise generate a new one, and every row would look forged.
    anyhow::ensure!(
        key_file.exists(),
        "the audit chain key file {} does not exist: point [audit] chain_key_file (or data_dir) at the key the servers use",
        key_file.display()
    );
    let store = open_store(config).await?;
    let report = audit_log(config, &store)?.verify().await;
    store.close().await;
    let report = report.context("reading the audit log")?;
    match report.first_break {
        None => {
            println!("audit log intact: {} rows", report.rows);
            eprintln!(
                "audit log head: {} {} (keep it outside the database to detect a later rollback)",
                report.head_seq, report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(first_break) => {
            println!("audit log broken: {first_break}");
            Ok(ExitCode::from(2))
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
