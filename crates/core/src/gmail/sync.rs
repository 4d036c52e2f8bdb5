//! One sync of one mailbox, under the mailbox's lease.
//!
//! The lease (a row condition in the database) lets one server at a time sync a mailbox; the
//! server holding it renews it every third of its time while the sync runs, and another
//! server takes it over only once it lapsed (its holder stopped). Every write of the sync's
//! progress is fenced by the lease owner, so a sync that lost its lease cannot overwrite the
//! one that took over.
//!
//! A full sync reads the history id from getProfile first and stores it with its progress
//! (the next messages.list page token); each page's messages are fetched (`format=raw`),
//! parsed, sealed, indexed and upserted, then the progress moves on. A killed full sync
//! resumes at its last page, skipping the messages it already stored. The history id the
//! copy is current to becomes the one read at the start only when the sync completes, so the
//! incremental sync after it replays every change made while it ran.
//!
//! An incremental sync reads Gmail's history since the stored id, folds the records into one
//! change per message (added, deleted, labels now), and applies them. A history id Gmail no
//! longer has (404) means a full sync.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use assistd_crypto::MailKey;
use assistd_domain::gmail::SyncReport;
use assistd_domain::{Error, ErrorReason, Result, UserId};
use assistd_gmail::{GmailError, UserGmail};
use assistd_store::{GmailConnectionState, MessageFilter};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::connection::sync_precondition;
use super::tokens::UserTokens;
use super::{GmailService, gmail_error};

mod fetch;

/// Labels whose messages are not part of the synced copy.
const EXCLUDED_LABELS: [&str; 2] = ["SPAM", "TRASH"];
/// The label of the inbox.
const INBOX: &str = "INBOX";
/// Messages fetched at the same time by one sync (the quota bucket paces them).
const FETCH_CONCURRENCY: usize = 8;
/// Most fetched messages stored in one transaction.
const WRITE_BATCH: usize = 32;
/// Largest messages.list page.
const LIST_PAGE: u32 = 500;

fn excluded(labels: &[String]) -> bool {
    labels.iter().any(|l| EXCLUDED_LABELS.contains(&l.as_str()))
}

/// What one sync changed.
#[derive(Debug, Default)]
struct Counts {
    full: bool,
    added: u32,
    updated: u32,
    deleted: u32,
    /// Receive times of the messages this sync added to the copy with the INBOX label.
    new_inbox: Vec<DateTime<Utc>>,
}

impl Counts {
    fn absorb(&mut self, stored: Stored) {
        self.added += stored.new;
        self.new_inbox.extend(stored.new_inbox);
    }
}

/// What storing fetched messages added to the copy.
#[derive(Debug, Default)]
struct Stored {
    /// Messages that were not in the copy before.
    new: u32,
    /// The receive times of those among them in INBOX.
    new_inbox: Vec<DateTime<Utc>>,
}

/// The INBOX messages one sync added to the synced copy: what an automatic triage after a
/// background sync looks at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct NewInboxMail {
    /// Their receive times (Gmail's `internalDate`), in no particular order.
    pub(super) received: Vec<DateTime<Utc>>,
}

/// What became of one message over the history read by an incremental sync.
#[derive(Debug)]
enum Change {
    /// Added (perhaps relabelled since); fetch it.
    Added(Vec<String>),
    /// Its labels are now these.
    Labels(Vec<String>),
    /// Deleted.
    Deleted,
}

/// Why a running sync stopped early without a Gmail error.
fn lease_lost() -> Error {
    Error::Aborted {
        reason: ErrorReason::SyncInProgress,
        message:
            "another server took this mailbox's sync over; its result will show in GetConnection"
                .into(),
    }
}

fn stopping() -> Error {
    Error::Unavailable {
        reason: ErrorReason::ServerShuttingDown,
        message: "the server is stopping; the sync stopped and resumes with the next one".into(),
        retry_after: Some(Duration::from_secs(1)),
    }
}

fn not_connected() -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::GmailNotConnected,
        message: "Gmail was disconnected while the sync ran".into(),
    }
}

/// The lease of one running sync, renewed in the background until dropped.
struct HeldLease {
    lost: Arc<AtomicBool>,
    renewal: CancellationToken,
}

impl HeldLease {
    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.cancel();
    }
}

/// One sync's context: who, under which lease name, with which key and client.
struct Run<'a> {
    service: &'a GmailService,
    user: UserId,
    owner: &'a str,
    lease: &'a HeldLease,
    key: &'a MailKey,
    api: UserGmail<'a>,
}

impl GmailService {
    /// Brings the user's synced copy up to date: incremental from the stored history id, or
    /// full on the first sync, when `full` is set, when a full sync was interrupted, or when
    /// Gmail no longer has the stored history id.
    ///
    /// # Errors
    /// FAILED_PRECONDITION with GMAIL_NOT_CONNECTED, GOOGLE_REAUTH_REQUIRED or
    /// GMAIL_SCOPE_MISSING; ABORTED with SYNC_IN_PROGRESS while another sync of the mailbox
    /// runs; RESOURCE_EXHAUSTED with GMAIL_RATE_LIMITED; UNAVAILABLE with GMAIL_UNAVAILABLE.
    /// A failure after the sync started is recorded on the connection.
    pub async fn sync(&self, user: UserId, full: bool) -> Result<SyncReport> {
        self.sync_reporting_new_mail(user, full)
            .await
            .map(|(report, _)| report)
    }

    /// [`GmailService::sync`], also telling which INBOX messages the sync added.
    pub(super) async fn sync_reporting_new_mail(
        &self,
        user: UserId,
        full: bool,
    ) -> Result<(SyncReport, NewInboxMail)> {
        let grant = self.inner.auth.google_grant(user).await?;
        let gmail = self.inner.store.gmail();
        let row = gmail.connection(user).await?;
        if let Some(err) = sync_precondition(grant.as_ref(), row.as_ref()) {
            return Err(err);
        }
        if row.is_none()
            && let Some(grant) = &grant
        {
            // A grant stored before the connection row existed.
            gmail.connect(user, "", &grant.scopes, self.now()).await?;
        }
        let owner = format!("{}/{}", self.inner.replica, uuid::Uuid::now_v7());
        let started_at = self.now();
        if !gmail
            .try_take_sync_lease(user, &owner, started_at, self.inner.settings.sync_lease)
            .await?
        {
            return Err(Error::Aborted {
                reason: ErrorReason::SyncInProgress,
                message: "a sync of this mailbox is already running; wait for it and retry".into(),
            });
        }
        let lease = self.keep_lease(user, &owner);
        let result = self.run(user, &owner, &lease, full).await;
        drop(lease);
        let finished_at = self.now();
        let result = match result {
            Ok(counts) => Ok(counts),
            Err(err) => {
                self.record_failure(user, &err, finished_at).await;
                Err(err)
            }
        };
        if let Err(err) = gmail.release_sync_lease(user, &owner).await {
            tracing::warn!(%user, error = %err, "releasing the sync lease failed; it lapses on its own");
        }
        let counts = result?;
        let connection = self.connection(user).await?;
        tracing::info!(
            %user,
            full = counts.full,
            added = counts.added,
            updated = counts.updated,
            deleted = counts.deleted,
            "gmail sync finished"
        );
        let report = SyncReport {
            full_sync: counts.full,
            added: counts.added,
            updated: counts.updated,
            deleted: counts.deleted,
            started_at,
            finished_at,
            connection,
        };
        let new_mail = NewInboxMail {
            received: counts.new_inbox,
        };
        Ok((report, new_mail))
    }

    /// When the next background sync of a mailbox is due: the interval, jittered by ±10%.
    pub(super) fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let interval = self.inner.settings.sync_interval.as_secs_f64();
        let factor = rand::random_range(0.9..=1.1);
        now + chrono::Duration::milliseconds((interval * factor * 1000.0) as i64)
    }

    /// Records a failed sync on the connection. Reauth and scope failures also mark the
    /// connection REAUTH_REQUIRED, which stops background retries until the user reconnects.
    async fn record_failure(&self, user: UserId, err: &Error, now: DateTime<Utc>) {
        let (reason, message, needs_reauth) = match err {
            Error::FailedPrecondition { reason, message } => (
                *reason,
                message.clone(),
                matches!(
                    reason,
                    ErrorReason::GoogleReauthRequired | ErrorReason::GmailScopeMissing
                ),
            ),
            Error::ResourceExhausted {
                reason, message, ..
            }
            | Error::Unavailable {
                reason, message, ..
            } if *reason != ErrorReason::ServerShuttingDown => (*reason, message.clone(), false),
            Error::Internal(_) => (
                ErrorReason::GmailUnavailable,
                "the sync failed on the server; it has been logged and is retried".to_owned(),
                false,
            ),
            // A lost lease or a stopping server: the sync goes on elsewhere or later.
            _ => return,
        };
        tracing::warn!(%user, reason = reason.as_str(), error = %err, "gmail sync failed");
        let gmail = self.inner.store.gmail();
        let next = (!needs_reauth).then(|| self.next_due(now));
        let recorded = async {
            gmail
                .record_sync_error(user, reason.as_str(), &message, now, next)
                .await?;
            if needs_reauth {
                gmail
                    .set_state(user, GmailConnectionState::ReauthRequired, now)
                    .await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = recorded {
            tracing::warn!(%user, error = %err, "recording the failed sync failed");
        }
    }

    /// Renews the lease every third of its time until the returned guard is dropped; a
    /// renewal the database refuses marks the lease lost.
    fn keep_lease(&self, user: UserId, owner: &str) -> HeldLease {
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = self.inner.stop.child_token();
        let service = self.clone();
        let owner = owner.to_owned();
        let flag = Arc::clone(&lost);
        let stop = renewal.clone();
        tokio::spawn(async move {
            let ttl = service.inner.settings.sync_lease;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ttl / 3) => {}
                }
                match service
                    .inner
                    .store
                    .gmail()
                    .renew_sync_lease(user, &owner, service.now(), ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%user, "the sync lease was taken over; stopping this sync");
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(err) => {
                        // Try again at the next beat; the lease lasts three beats.
                        tracing::warn!(%user, error = %err, "renewing the sync lease failed");
                    }
                }
            }
        });
        HeldLease { lost, renewal }
    }

    async fn run(
        &self,
        user: UserId,
        owner: &str,
        lease: &HeldLease,
        full: bool,
    ) -> Result<Counts> {
        let key = self.mail_key_or_create(user).await?;
        let tokens = UserTokens {
            auth: self.inner.auth.clone(),
            user,
        };
        let quota_key = user.to_string();
        let run = Run {
            service: self,
            user,
            owner,
            lease,
            key: &key,
            api: self.inner.client.for_user(&quota_key, &tokens),
        };
        let row = self
            .inner
            .store
            .gmail()
            .connection(user)
            .await?
            .ok_or_else(not_connected)?;
        if !full
            && row.full_sync.is_none()
            && let Some(history_id) = row.history_id
        {
            match run.incremental(history_id).await {
                Err(IncrementalError::HistoryTooOld) => {
                    tracing::info!(%user, "gmail history too old; running a full sync");
                }
                Err(IncrementalError::Failed(err)) => return Err(err),
                Ok(counts) => return Ok(counts),
            }
            return run.full(None).await;
        }
        let resume = if full { None } else { row.full_sync };
        run.full(resume).await
    }
}

/// How an incremental sync ends without result.
enum IncrementalError {
    HistoryTooOld,
    Failed(Error),
}

impl From<Error> for IncrementalError {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

impl Run<'_> {
    fn check(&self) -> Result<()> {
        if self.service.inner.stop.is_cancelled() {
            return Err(stopping());
        }
        if self.lease.lost() {
            return Err(lease_lost());
        }
        Ok(())
    }

    fn now(&self) -> DateTime<Utc> {
        self.service.now()
    }

    /// A full sync, from scratch or resuming `progress`.
    async fn full(&self, progress: Option<assistd_store::FullSyncProgress>) -> Result<Counts> {
        let gmail = self.service.inner.store.gmail();
        let resuming = progress.is_some();
        let (start_history_id, mut page_token, mut fetched) = match progress {
            Some(progress) => (
                progress.start_history_id,
                progress.page_token,
                progress.fetched,
            ),
            None => {
                let profile = self.api.profile().await.map_err(gmail_error)?;
                if !gmail
                    .begin_full_sync(self.user, self.owner, profile.history_id, self.now())
                    .await?
                    // The mailbox's own address, which GetConnection shows from now on (the
                    // sign-in's address may be another of the account's).
                    || !gmail
                        .record_mailbox_address(self.user, self.owner, &profile.email_address)
                        .await?
                {
                    return Err(lease_lost());
                }
                (profile.history_id, None, 0)
            }
        };
        let max = i64::from(self.service.inner.settings.max_full_sync_messages);
        // What a fresh full sync listed: a repair removes what Gmail no longer lists.
        let mut listed_ids: Option<HashSet<String>> = (!resuming).then(HashSet::new);
        let mut counts = Counts {
            full: true,
            ..Counts::default()
        };
        while fetched < max {
            self.check()?;
            let want =
                u32::try_from((max - fetched).min(i64::from(LIST_PAGE))).unwrap_or(LIST_PAGE);
            let page = self
                .api
                .list_messages(page_token.as_deref(), want)
                .await
                .map_err(gmail_error)?;
            let mut ids: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
            ids.truncate(usize::try_from(want).unwrap_or(usize::MAX));
            // A resumed sync skips what it stored before it was stopped; a fresh one fetches
            // every message, so a repair sync refreshes labels too.
            let skip = if resuming {
                gmail.stored_message_ids(self.user, &ids).await?
            } else {
                Default::default()
            };
            let listed = ids.len();
            if let Some(seen) = listed_ids.as_mut() {
                seen.extend(ids.iter().cloned());
            }
            let wanted: Vec<String> = ids.into_iter().filter(|id| !skip.contains(id)).collect();
            counts.absorb(self.fetch_all(wanted).await?);
            fetched += i64::try_from(listed).unwrap_or(i64::MAX);
            page_token = page.next_page_token;
            if !gmail
                .save_full_sync_progress(
                    self.user,
                    self.owner,
                    page_token.as_deref(),
                    fetched,
                    self.now(),
                )
                .await?
            {
                return Err(lease_lost());
            }
            if page_token.is_none() {
                break;
            }
        }
        if page_token.is_none()
            && let Some(seen) = listed_ids
        {
            counts.deleted += self.remove_unlisted(&seen).await?;
        }
        self.complete(start_history_id).await?;
        Ok(counts)
    }

    /// Deletes the synced messages a complete listing of the mailbox did not name (deleted
    /// in Gmail, or moved to SPAM or TRASH, while the history was lost); returns how many.
    async fn remove_unlisted(&self, listed: &HashSet<String>) -> Result<u32> {
        let gmail = self.service.inner.store.gmail();
        let mut unlisted = Vec::new();
        let mut after = None;
        loop {
            let page = gmail
                .list_messages(self.user, &MessageFilter::default(), after.clone(), 500)
                .await?;
            let last_page = page.len() < 500;
            for stored in page {
                after = Some((stored.internal_date, stored.message_id.clone()));
                if !listed.contains(&stored.message_id) {
                    unlisted.push(stored.message_id);
                }
            }
            if last_page {
                break;
            }
        }
        let mut deleted = 0;
        for id in unlisted {
            self.check()?;
            deleted += u32::from(gmail.delete_message(self.user, &id).await?);
        }
        Ok(deleted)
    }

    async fn complete(&self, history_id: u64) -> Result<()> {
        let now = self.now();
        if self
            .service
            .inner
            .store
            .gmail()
            .complete_sync(
                self.user,
                self.owner,
                history_id,
                now,
                self.service.next_due(now),
            )
            .await?
        {
            Ok(())
        } else {
            Err(lease_lost())
        }
    }

    /// An incremental sync from `start`.
    async fn incremental(&self, start: u64) -> Result<Counts, IncrementalError> {
        let mut order: Vec<String> = Vec::new();
        let mut changes: HashMap<String, Change> = HashMap::new();
        let mut page_token: Option<String> = None;
        let mut latest = start;
        loop {
            self.check()?;
            let page = match self.api.list_history(start, page_token.as_deref()).await {
                Ok(page) => page,
                Err(GmailError::HistoryTooOld) => return Err(IncrementalError::HistoryTooOld),
                Err(err) => return Err(gmail_error(err).into()),
            };
            for record in page.records {
                for message in record.messages_added {
                    note(
                        &mut order,
                        &mut changes,
                        message.id,
                        Change::Added(message.label_ids),
                    );
                }
                for message in record.messages_deleted {
                    note(&mut order, &mut changes, message.id, Change::Deleted);
                }
                for change in record.labels_added.into_iter().chain(record.labels_removed) {
                    let labels = change.message.label_ids;
                    note(
                        &mut order,
                        &mut changes,
                        change.message.id,
                        Change::Labels(labels),
                    );
                }
            }
            latest = latest.max(page.history_id);
            page_token = page.next_page_token;
            if page_token.is_none() {
                break;
            }
        }
        let gmail = self.service.inner.store.gmail();
        let mut counts = Counts::default();
        let mut to_fetch = Vec::new();
        for id in order {
            self.check()?;
            let Some(change) = changes.remove(&id) else {
                continue;
            };
            // (labels now, whether a change of labels counts as an update)
            let relabel = match change {
                Change::Deleted => None,
                Change::Added(labels) | Change::Labels(labels) if excluded(&labels) => None,
                // Already stored (history replayed after a full sync): only its labels.
                Change::Added(labels) => Some((labels, false)),
                Change::Labels(labels) => Some((labels, true)),
            };
            match relabel {
                None => {
                    counts.deleted += u32::from(gmail.delete_message(self.user, &id).await?);
                }
                Some((labels, counts_as_update)) => {
                    if gmail.update_labels(self.user, &id, &labels).await? {
                        counts.updated += u32::from(counts_as_update);
                    } else {
                        // Not in the copy yet (new, or back from SPAM or TRASH): fetch it.
                        to_fetch.push(id);
                    }
                }
            }
        }
        counts.absorb(self.fetch_all(to_fetch).await?);
        self.complete(latest).await?;
        Ok(counts)
    }
}

/// Folds one history entry into the message's change so far.
fn note(
    order: &mut Vec<String>,
    changes: &mut HashMap<String, Change>,
    id: String,
    change: Change,
) {
    match changes.get_mut(&id) {
        None => {
            order.push(id.clone());
            changes.insert(id, change);
        }
        Some(existing) => {
            *existing = match (std::mem::replace(existing, Change::Deleted), change) {
                (_, Change::Deleted) | (Change::Deleted, _) => Change::Deleted,
                (Change::Added(_), Change::Added(labels) | Change::Labels(labels)) => {
                    Change::Added(labels)
                }
                (Change::Labels(_), Change::Added(labels)) => Change::Added(labels),
                (Change::Labels(_), Change::Labels(labels)) => Change::Labels(labels),
            };
        }
    }
}
