//! `assistd admin export-user`: an operator exports one user's data (the same NDJSON as
//! AuthService.ExportData) to a new file with mode 0600, or to stdout. Audited as an operator
//! action: the audit row has no actor and says `requested_by=operator`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use assistd::config::Config;
use assistd::server::{audit_log, open_store};
use assistd_core::export::{ChunkSink, DataExport, Requester};
use assistd_domain::{SystemClock, UserId};
use tokio::io::AsyncWriteExt as _;

/// The arguments of `admin export-user`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportUserArgs {
    /// The user: account id or email address.
    #[arg(long, value_name = "ID|EMAIL")]
    user: String,
    /// Write the export to this new file (mode 0600, must not exist) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Writes chunks to a file or stdout; remembers the first write error.
struct WriterSink<W> {
    writer: W,
    error: Option<std::io::Error>,
}

impl<W: tokio::io::AsyncWrite + Unpin + Send> ChunkSink for WriterSink<W> {
    async fn send(&mut self, chunk: Vec<u8>) -> bool {
        match self.writer.write_all(&chunk).await {
            Ok(()) => true,
            Err(err) => {
                self.error = Some(err);
                false
            }
        }
    }
}

/// Runs `admin export-user`.
pub(crate) async fn run(config: &Config, args: ExportUserArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.out {
        Some(path) => Some(create_private(path)?),
        None => None,
    };
    let store = open_store(config).await?;
    let result = export(config, &store, &args.user, file).await;
    store.close().await;
    if result.is_err()
        && let Some(path) = &args.out
    {
        // A partial export is useless and holds personal data: do not leave it behind.
        let _ = std::fs::remove_file(path);
    }
    let (user, summary) = result?;
    eprintln!(
        "exported {} records ({} bytes) of user {user}{}",
        summary.records,
        summary.bytes,
        args.out
            .as_ref()
            .map(|path| format!(" to {}", path.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(
    config: &Config,
    store: &assistd_store::Store,
    user: &str,
    file: Option<tokio::fs::File>,
) -> anyhow::Result<(UserId, assistd_core::export::ExportSummary)> {
    let user = resolve_user(store, user).await?;
    let key_file = config.audit_chain_key_file();
    // Loading the key would otherwise generate a new one, and the export's audit row (and every
    // row after it) would not verify.
    anyhow::ensure!(
        key_file.exists(),
        "the audit chain key file {} does not exist: point [audit] chain_key_file (or data_dir) at the key the servers use",
        key_file.display()
    );
    let audit = audit_log(config, store)?;
    let export = DataExport::new(store.clone(), audit, Arc::new(SystemClock));
    let summary = match file {
        Some(file) => write(&export, user, file).await?,
        None => write(&export, user, tokio::io::stdout()).await?,
    };
    Ok((user, summary))
}

async fn write<W: tokio::io::AsyncWrite + Unpin + Send>(
    export: &DataExport,
    user: UserId,
    writer: W,
) -> anyhow::Result<assistd_core::export::ExportSummary> {
    let mut sink = WriterSink {
        writer,
        error: None,
    };
    let summary = export
        .run(user, &Requester::Operator, &mut sink)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))
        .context("exporting")?;
    if let Some(err) = sink.error {
        return Err(err).context("writing the export");
    }
    sink.writer.flush().await.context("writing the export")?;
    anyhow::ensure!(summary.complete, "the export stopped before its end");
    Ok(summary)
}

/// The user named by id or email address.
async fn resolve_user(store: &assistd_store::Store, user: &str) -> anyhow::Result<UserId> {
    if let Ok(id) = user.parse::<UserId>() {
        store
            .users()
            .get(id)
            .await
            .map_err(|err| anyhow::anyhow!("user {id}: {err}"))?;
        return Ok(id);
    }
    store
        .export()
        .user_by_email(user)
        .await
        .map_err(|err| anyhow::anyhow!("user {user}: {err}"))
}

/// A new file only its owner can read.
fn create_private(path: &Path) -> anyhow::Result<tokio::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    Ok(tokio::fs::File::from_std(file))
}
