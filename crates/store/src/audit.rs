//! The audit log: append-only, tamper-evident. Each row stores an HMAC-SHA256 over its own
//! content and its predecessor's hash, keyed with a chain key kept outside the database, so
//! someone who can write to the database but does not hold the key can neither edit, insert
//! nor re-chain rows unnoticed. A single head row holds the newest sequence number and hash.
//! Appending locks the head first, so appenders are serialised on both engines and the chain
//! never forks. [`AuditLog::verify`] walks the chain and names the first row that was edited,
//! deleted, inserted or reordered.

use std::collections::BTreeMap;

use assistd_domain::audit::{AuditEvent, AuditOutcome};
use assistd_domain::{Error, Result, UserId};
use aws_lc_rs::hmac;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{audit_chain_head, audit_events};
use crate::{Store, db_error};

/// The hash that precedes the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD_ID: i32 = 1;
/// Rows read per query while verifying.
const VERIFY_BATCH: u64 = 1000;

/// One stored audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Public id of the event.
    pub id: uuid::Uuid,
    /// When it was recorded (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Who acted, if known.
    pub actor: Option<UserId>,
    /// The action's stored name (see `AuditAction::as_str`).
    pub action: String,
    /// The object acted on.
    pub target: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Request id of the call that caused it.
    pub request_id: String,
    /// Client address.
    pub client_ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Non-secret facts.
    pub metadata: BTreeMap<String, String>,
}

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
}

impl AuditLog {
    /// The audit log in `store`, chained with `key`.
    #[must_use]
    pub fn new(store: &Store, key: AuditChainKey) -> Self {
        Self {
            store: store.clone(),
            key: std::sync::Arc::new(key),
        }
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
    /// Appends `event`. Call it on the transaction that makes the audited change, so both
    /// commit or neither does; the head row lock it takes is held until that commit.
    ///
    /// # Errors
    /// The database failed.
    pub async fn append<C: ConnectionTrait>(&self, db: &C, event: &AuditEvent) -> Result<()> {
        let head = audit_chain_head::Entity::update_many()
            .col_expr(
                audit_chain_head::Column::Seq,
                Expr::col(audit_chain_head::Column::Seq).add(1),
            )
            .filter(audit_chain_head::Column::Id.eq(HEAD_ID))
            .exec_with_returning(db)
            .await
            .map_err(db_error)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("the audit chain head row is missing"))?;
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
        let hash = row.hash.clone();
        audit_events::ActiveModel::from(row)
            .insert(db)
            .await
            .map_err(db_error)?;
        audit_chain_head::Entity::update_many()
            .col_expr(audit_chain_head::Column::LastHash, Expr::value(hash))
            .filter(audit_chain_head::Column::Id.eq(HEAD_ID))
            .exec(db)
            .await
            .map_err(db_error)?;
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

    /// Walks the whole chain in sequence order and reports the first break.
    ///
    /// # Errors
    /// The database failed.
    pub async fn verify(&self) -> Result<ChainReport> {
        let db = self.store.connection();
        let mut expected_seq = 1;
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut rows = 0;
        let mut last_seq = 0;
        loop {
            let batch = audit_events::Entity::find()
                .filter(audit_events::Column::Seq.gt(last_seq))
                .order_by_asc(audit_events::Column::Seq)
                .limit(VERIFY_BATCH)
                .all(db)
                .await
                .map_err(db_error)?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                rows += 1;
                let found = |first_break| {
                    Ok(ChainReport {
                        rows,
                        first_break: Some(first_break),
                    })
                };
                if chain_hash(&self.key, &row) != row.hash {
                    return found(ChainBreak::Forged { seq: row.seq });
                }
                if row.seq != expected_seq {
                    return found(ChainBreak::Missing {
                        expected_seq,
                        found_seq: row.seq,
                    });
                }
                if row.prev_hash != expected_prev {
                    return found(ChainBreak::Unlinked { seq: row.seq });
                }
                expected_seq = row.seq + 1;
                last_seq = row.seq;
                expected_prev = row.hash;
            }
        }
        let head = audit_chain_head::Entity::find_by_id(HEAD_ID)
            .one(db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("the audit chain head row is missing"))?;
        let first_break = (head.seq != last_seq || head.last_hash != expected_prev).then_some(
            ChainBreak::HeadMismatch {
                head_seq: head.seq,
                last_seq,
            },
        );
        Ok(ChainReport { rows, first_break })
    }
}

/// Narrows [`AuditLog::list_for_user`].
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only these actions; empty means all.
    pub actions: Vec<assistd_domain::audit::AuditAction>,
    /// Only events at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub end: Option<DateTime<Utc>>,
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
