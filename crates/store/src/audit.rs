//! The audit log: append-only, tamper-evident. Each row stores an HMAC-SHA256 over its own
//! content and its predecessor's hash, keyed with a chain key kept outside the database, so
//! someone who can write to the database but does not hold the key can neither edit, insert
//! nor re-chain rows unnoticed. A single head row holds the newest sequence number and hash,
//! with an HMAC of its own, so the newest rows cannot be deleted by moving the head back to a
//! state it never had. Appending locks the head first, inside the caller's transaction, so
//! appenders are serialised on both engines and the chain never forks. [`AuditLog::verify`]
//! walks the chain and names the first row that was edited, deleted, inserted or reordered.
//!
//! # What stays undetectable from inside the database
//!
//! Someone with write access who kept a copy of an earlier head row (sequence number, hash
//! and its genuine MAC) can delete every row after it and put that head back: the chain then
//! verifies as intact, only shorter, and later appends continue from there. The empty log's
//! head needs no copy (sequence 0, [`GENESIS_HASH`], empty MAC), so deleting every row and
//! resetting the head to it goes unnoticed alike. Only a record kept outside the database
//! exposes this: `assistd admin verify-audit` prints the head (sequence number and full hash)
//! of an intact chain, and an operator who stores it elsewhere can later check that the row
//! with that sequence number still carries that hash (or that the head is still the same when
//! nothing was appended since). As each row's MAC covers its predecessor's hash, that one row
//! vouches for every row before it.
use assistd_domain::audit::{AuditEvent, AuditOutcome};
pub use assistd_domain::audit::{AuditFilter, AuditRecord};
use assistd_domain::{Error, Result, UserId};
use aws_lc_rs::hmac;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{audit_chain_head, audit_events};
use crate::{Store, db_error};

/// The hash that precedes the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD_ID: i32 = 1;
/// Rows read per query while verifying.
const VERIFY_BATCH: u64 = 1000;

/// What verification found wrong first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's content does not match its MAC: it was edited, or inserted by someone
    /// without the chain key.
    Forged {
        /// The edited or inserted row.
        seq: i64,
    },
    /// Sequence numbers jump: rows were deleted before `seq`.
    Missing {
        /// The first missing sequence number.
        expected_seq: i64,
        /// The row found instead.
        found_seq: i64,
    },
    /// The row is intact but does not follow its predecessor: a row was inserted, or rows
    /// were reordered or replaced.
    Unlinked {
        /// The row whose `prev_hash` does not match its predecessor.
        seq: i64,
    },
    /// A row numbered below 1, where the chain starts: it was inserted by someone writing to
    /// the database directly, and would otherwise be listed without ever being verified.
    BeforeStart {
        /// The row's sequence number.
        seq: i64,
    },
    /// The head row's sequence number and hash do not match its MAC: it was rewritten by
    /// someone without the chain key, typically to hide rows deleted from the end. Once an
    /// appender finds the head forged it keeps the head's MAC empty, so the break stays
    /// visible after later appends instead of being laundered by them.
    HeadForged {
        /// Newest sequence number according to the head.
        head_seq: i64,
    },
    /// The head records a different newest row than the table holds: rows were deleted from
    /// the end, or appended without going through the head.
    HeadMismatch {
        /// Newest sequence number according to the head.
        head_seq: i64,
        /// Newest sequence number in the table.
        last_seq: i64,
    },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forged { seq } => write!(
                f,
                "row {seq} was edited or inserted: its content does not match its MAC"
            ),
            Self::Missing {
                expected_seq,
                found_seq,
            } => write!(
                f,
                "rows {expected_seq}..{} were deleted: row {found_seq} follows row {}",
                found_seq - 1,
                expected_seq - 1
            ),
            Self::Unlinked { seq } => write!(
                f,
                "row {seq} does not follow row {}: a row was inserted, replaced or reordered there",
                seq - 1
            ),
            Self::BeforeStart { seq } => write!(
                f,
                "row {seq} precedes row 1, where the chain starts: it was inserted"
            ),
            Self::HeadForged { head_seq } => write!(
                f,
                "the chain head (row {head_seq}) does not match its MAC: it was rewritten, e.g. to hide rows deleted from the end"
            ),
            Self::HeadMismatch { head_seq, last_seq } => write!(
                f,
                "the newest row is {last_seq} but the chain head records {head_seq}: rows were deleted from or appended to the end"
            ),
        }
    }
}

/// The result of [`AuditLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows examined.
    pub rows: u64,
    /// The first break, or `None` when the whole chain is intact.
    pub first_break: Option<ChainBreak>,
    /// The head's sequence number as read (0 for an empty log). Of an intact chain, record it
    /// with [`Self::head_hash`] outside the database: rolling the head back to a state it
    /// really had, with its genuine MAC, can only be noticed by comparing with such a record.
    pub head_seq: i64,
    /// The head's hash as read: the hash of row [`Self::head_seq`], or [`GENESIS_HASH`].
    pub head_hash: String,
}

/// The secret that keys the chain's HMACs. Without it rows cannot be forged; with a lost key
/// the existing chain can no longer be verified. Every replica must use the same key.
pub struct AuditChainKey(hmac::Key);

impl std::fmt::Debug for AuditChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditChainKey([redacted])")
    }
}

impl AuditChainKey {
    /// A key from at least 32 secret bytes.
    ///
    /// # Errors
    /// Fewer than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 32 {
            return Err(Error::internal(
                "the audit chain key must be at least 32 bytes",
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// Reads the base64 key at `path`, or generates 32 random bytes into it (mode 0600).
    ///
    /// # Errors
    /// The file cannot be read or written, or does not hold a base64 key of 32+ bytes.
    pub fn load_or_generate(path: &std::path::Path) -> Result<Self> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let (text, _) = assistd_domain::secret_file::read_or_create(path, || {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(&mut *bytes).expect("system random generator failed");
            zeroize::Zeroizing::new(format!("{}\n", engine.encode(*bytes)).into_bytes())
        })
        .map_err(|err| Error::internal(format!("audit chain key {}: {err}", path.display())))?;
        let decoded = zeroize::Zeroizing::new(
            engine
                .decode(String::from_utf8_lossy(&text).trim())
                .map_err(|_| {
                    Error::internal(format!("audit chain key {} is not base64", path.display()))
                })?,
        );
        Self::from_bytes(&decoded)
    }
}

/// Appends to, lists and verifies the audit log.
#[derive(Clone, Debug)]
pub struct AuditLog {
    store: Store,
    key: std::sync::Arc<AuditChainKey>,
    /// Rows appended through this log (and its clones), for the server's metrics.
    appended: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl AuditLog {
    /// The audit log in `store`, chained with `key`.
    #[must_use]
    pub fn new(store: &Store, key: AuditChainKey) -> Self {
        Self {
            store: store.clone(),
            key: std::sync::Arc::new(key),
            appended: std::sync::Arc::default(),
        }
    }

    /// How many rows this log and its clones appended since it was made. A row counts once its
    /// statements succeeded; its transaction may still roll back.
    #[must_use]
    pub fn appended(&self) -> u64 {
        self.appended.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The MAC over every column but the hash, in a fixed order.
fn chain_hash(key: &AuditChainKey, row: &audit_events::Model) -> String {
    let canonical = serde_json::json!([
        row.seq,
        row.id.to_string(),
        format_time(row.occurred_at),
        row.actor_user_id.map(|id| id.to_string()),
        row.action,
        row.target,
        row.outcome,
        row.request_id,
        row.client_ip,
        row.user_agent,
        row.metadata,
        row.prev_hash,
    ])
    .to_string();
    sign_hex(key, &canonical)
}

/// The head's MAC over its sequence number and hash. The leading label keeps it apart from
/// any row's MAC, whose encoding starts with a number.
fn head_mac(key: &AuditChainKey, seq: i64, last_hash: &str) -> String {
    let canonical = serde_json::json!(["audit_chain_head", seq, last_hash]).to_string();
    sign_hex(key, &canonical)
}

/// Whether `mac` is the head's genuine MAC for (`seq`, `last_hash`). The head the migration
/// inserts cannot be MACed there (the key is not known at migration time), so an empty MAC is
/// accepted for exactly that state: sequence 0 and [`GENESIS_HASH`].
fn head_mac_valid(key: &AuditChainKey, seq: i64, last_hash: &str, mac: &str) -> bool {
    if mac.is_empty() {
        return seq == 0 && last_hash == GENESIS_HASH;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(
        head_mac(key, seq, last_hash).as_bytes(),
        mac.as_bytes(),
    )
    .is_ok()
}

fn sign_hex(key: &AuditChainKey, canonical: &str) -> String {
    let tag = hmac::sign(&key.0, canonical.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl AuditLog {
    /// Appends `event` within `txn`, the transaction that makes the audited change, so both
    /// commit or neither does. It takes a transaction, not any connection, because its three
    /// statements (advance the head, insert the row, store the new hash) must commit together,
    /// and the head row lock the first takes must be held until then so concurrent appends
    /// cannot fork the chain.
    ///
    /// If the head found does not match its MAC (see [`ChainBreak::HeadForged`]), the event is
    /// still appended, but the new head is left without a MAC: MACing it would launder the
    /// forgery, and refusing would block every audited change.
    ///
    /// # Errors
    /// The database failed.
    pub async fn append(&self, txn: &DatabaseTransaction, event: &AuditEvent) -> Result<()> {
        let head = audit_chain_head::Entity::update_many()
            .col_expr(
                audit_chain_head::Column::Seq,
                Expr::col(audit_chain_head::Column::Seq).add(1),
            )
            .filter(audit_chain_head::Column::Id.eq(HEAD_ID))
            .exec_with_returning(txn)
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("the audit chain head row is missing"))?;
        // The returned row has the new sequence number but still the previous hash and MAC.
        let head_intact = head_mac_valid(&self.key, head.seq - 1, &head.last_hash, &head.head_mac);
        if !head_intact {
            tracing::error!(
                head_seq = head.seq - 1,
                "the audit chain head does not match its MAC: it was rewritten outside assistd; appending without a head MAC"
            );
        }
        let occurred_at = Utc::now()
            .duration_trunc(TimeDelta::microseconds(1))
            .map_err(Error::internal)?;
        let metadata = serde_json::to_string(&event.metadata).map_err(Error::internal)?;
        let mut row = audit_events::Model {
            seq: head.seq,
            id: uuid::Uuid::now_v7(),
            occurred_at,
            actor_user_id: event.actor.map(|user| user.as_uuid()),
            action: event.action.as_str().to_owned(),
            target: truncate(&event.target, 256),
            outcome: match event.outcome {
                AuditOutcome::Success => "success",
                AuditOutcome::Failure => "failure",
            }
            .to_owned(),
            request_id: truncate(&event.context.request_id, 128),
            client_ip: event.context.client_ip.map(|ip| ip.to_string()),
            user_agent: event
                .context
                .user_agent
                .as_deref()
                .map(|ua| truncate(ua, 512)),
            metadata,
            prev_hash: head.last_hash,
            hash: String::new(),
        };
        row.hash = chain_hash(&self.key, &row);
        let new_mac = if head_intact {
            head_mac(&self.key, row.seq, &row.hash)
        } else {
            String::new()
        };
        let hash = row.hash.clone();
        audit_events::ActiveModel::from(row)
            .insert(txn)
            .await
            .map_err(db_error)?;
        audit_chain_head::Entity::update_many()
            .col_expr(audit_chain_head::Column::LastHash, Expr::value(hash))
            .col_expr(audit_chain_head::Column::HeadMac, Expr::value(new_mac))
            .filter(audit_chain_head::Column::Id.eq(HEAD_ID))
            .exec(txn)
            .await
            .map_err(db_error)?;
        self.appended
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The user's own events, newest first: at most `limit`, older than `before_seq` when
    /// given.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_for_user(
        &self,
        user: UserId,
        before_seq: Option<i64>,
        limit: u64,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        let mut query = audit_events::Entity::find()
            .filter(audit_events::Column::ActorUserId.eq(user.as_uuid()))
            .order_by_desc(audit_events::Column::Seq)
            .limit(limit);
        if let Some(before) = before_seq {
            query = query.filter(audit_events::Column::Seq.lt(before));
        }
        if !filter.actions.is_empty() {
            query = query.filter(
                audit_events::Column::Action.is_in(filter.actions.iter().map(|a| a.as_str())),
            );
        }
        if let Some(start) = filter.start {
            query = query.filter(audit_events::Column::OccurredAt.gte(start));
        }
        if let Some(end) = filter.end {
            query = query.filter(audit_events::Column::OccurredAt.lt(end));
        }
        let rows = query.all(self.store.connection()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Walks the whole chain in sequence order, every row whatever its sequence number, then
    /// checks the head's MAC and that it points at the newest row, and reports the first
    /// break.
    ///
    /// An intact report proves the chain was extended only with the key and lost nothing
    /// before its head, but not that the head is the newest one there ever was: see the
    /// module documentation, and record [`ChainReport::head_seq`] and
    /// [`ChainReport::head_hash`] outside the database to notice a rollback.
    ///
    /// # Errors
    /// The database failed.
    pub async fn verify(&self) -> Result<ChainReport> {
        let db = self.store.connection();
        let head = audit_chain_head::Entity::find_by_id(HEAD_ID)
            .one(db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("the audit chain head row is missing"))?;
        let mut report = ChainReport {
            rows: 0,
            first_break: None,
            head_seq: head.seq,
            head_hash: head.last_hash.clone(),
        };
        let mut expected_seq = 1;
        let mut expected_prev = GENESIS_HASH.to_owned();
        // No lower bound at first: a row numbered 0 or below must be examined too.
        let mut after: Option<i64> = None;
        loop {
            let mut query = audit_events::Entity::find()
                .order_by_asc(audit_events::Column::Seq)
                .limit(VERIFY_BATCH);
            if let Some(after) = after {
                query = query.filter(audit_events::Column::Seq.gt(after));
            }
            let batch = query.all(db).await.map_err(db_error)?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                report.rows += 1;
                let first_break = if row.seq < expected_seq {
                    Some(ChainBreak::BeforeStart { seq: row.seq })
                } else if chain_hash(&self.key, &row) != row.hash {
                    Some(ChainBreak::Forged { seq: row.seq })
                } else if row.seq != expected_seq {
                    Some(ChainBreak::Missing {
                        expected_seq,
                        found_seq: row.seq,
                    })
                } else if row.prev_hash != expected_prev {
                    Some(ChainBreak::Unlinked { seq: row.seq })
                } else {
                    None
                };
                if first_break.is_some() {
                    report.first_break = first_break;
                    return Ok(report);
                }
                after = Some(row.seq);
                expected_seq = row.seq + 1;
                expected_prev = row.hash;
            }
        }
        let last_seq = expected_seq - 1;
        report.first_break =
            if !head_mac_valid(&self.key, head.seq, &head.last_hash, &head.head_mac) {
                Some(ChainBreak::HeadForged { head_seq: head.seq })
            } else if head.seq != last_seq || head.last_hash != expected_prev {
                Some(ChainBreak::HeadMismatch {
                    head_seq: head.seq,
                    last_seq,
                })
            } else {
                None
            };
        Ok(report)
    }
}

fn record(row: audit_events::Model) -> AuditRecord {
    AuditRecord {
        seq: row.seq,
        id: row.id,
        occurred_at: row.occurred_at,
        actor: row.actor_user_id.map(UserId::from_uuid),
        action: row.action,
        target: row.target,
        outcome: row.outcome,
        request_id: row.request_id,
        client_ip: row.client_ip,
        user_agent: row.user_agent,
        metadata: serde_json::from_str(&row.metadata).unwrap_or_default(),
    }
}
