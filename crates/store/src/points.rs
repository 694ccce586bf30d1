//! Records and SQL of the points ledger, shared by both stores. Placeholders
//! appear in numeric order (SQLite binds them by first appearance).
//!
//! A write loads the user's account (debt), lots and holds, asks the domain for
//! a [`Plan`](huiliu_domain::points::ledger::Plan) and writes it: entries, lot
//! and hold changes and the account's cached figures, in one transaction.

use crate::IdempotencyKey;
use huiliu_domain::ids::UserId;
use huiliu_domain::points::ledger::{EntryKind, Op, Plan, Summary, NEW_ID};
use huiliu_domain::points::{Allocation, ExpiryPolicy, Hold, Lot, Points, ShortfallPolicy};

/// The idempotency scope of keyed ledger writes (earn, spend, hold).
pub const POINTS_SCOPE: &str = "points";
/// The idempotency scope of writes on an earlier entry (capture, release,
/// reverse): keyed by the action and the entry, so a retry replays the answer.
pub const SETTLE_SCOPE: &str = "points_settle";

/// What an entry is for: `{"type": "order", "id": "202611240001"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

impl Cause {
    pub fn new(kind: &str, id: Option<String>) -> Self {
        Self {
            kind: kind.to_string(),
            id,
        }
    }
}

/// A new entry of its own: an earn, a spend or a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointsAction {
    Earn {
        amount: i64,
        expires_us: Option<i64>,
        /// Pending until then (the refund window).
        vests_us: Option<i64>,
    },
    Spend {
        amount: i64,
    },
    Hold {
        amount: i64,
        times_out_us: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsRequest {
    pub user_id: UserId,
    pub action: PointsAction,
    pub reason: String,
    pub cause: Cause,
    pub now_us: i64,
    pub idempotency: IdempotencyKey,
}

/// An action on an earlier entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Spend a hold for good.
    Capture,
    /// Give a hold's points back.
    Release,
    /// Undo an earn (void while pending, else clawback), a spend or a capture.
    Reverse,
}

impl Settlement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Release => "release",
            Self::Reverse => "reverse",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRequest {
    /// The earlier entry's sequence number (`ptx_N`).
    pub entry: i64,
    pub action: Settlement,
    pub reason: String,
    pub cause: Cause,
    pub now_us: i64,
}

impl SettleRequest {
    /// The key a retry of this request finds its first answer under.
    pub fn idempotency(&self) -> IdempotencyKey {
        let key = format!("{}:{}", self.action.as_str(), self.entry);
        IdempotencyKey {
            request_hash: huiliu_domain::messages::request_hash(&[&key]),
            key,
        }
    }
}

/// What a ledger write answers, kept to answer a replay the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PointsReceipt {
    pub transaction_id: String,
    /// `earn`, `spend`, `hold`, `capture`, `release`, `void` or `reverse`.
    pub kind: String,
    /// What the entry added to the user's points (negative: took).
    pub amount: i64,
    /// Spendable points right after.
    pub balance: i64,
    pub pending: i64,
    pub on_hold: i64,
    pub debt: i64,
    /// A capped clawback: the points it could not take back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shortfall: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointsOutcome {
    Done(PointsReceipt),
    Replayed(PointsReceipt),
    KeyReused,
    UnknownUser,
    /// A spend or hold beyond the balance; nothing written.
    Insufficient {
        available: i64,
    },
    /// No entry of this app has that id.
    UnknownEntry,
    /// The entry cannot take this action (e.g. reversing an expiry, capturing a spend).
    NotApplicable {
        kind: String,
    },
    /// The hold was captured or released already (`how`), or timed out.
    HoldSettled {
        how: String,
    },
    /// The entry was reversed or voided already by another entry.
    AlreadyReversed {
        by: String,
    },
}

/// User $2 of app $1: user_index.
pub const USER_INDEX: &str = "SELECT user_index FROM users WHERE app_seq = $1 AND user_id = $2";

/// The user's account (app $1, user $2): debt, points on hold. Holds are only
/// read when some points are on hold.
pub const ACCOUNT: &str =
    "SELECT debt, on_hold FROM points_accounts WHERE app_seq = $1 AND user_index = $2";

const LOT_COLUMNS: &str = "lot_id, amount, remaining, expires_us, vests_us, voided, expired";

/// The user's lots with points left (app $1, user $2).
pub fn live_lots_sql() -> String {
    format!(
        "SELECT {LOT_COLUMNS} FROM points_lots
        WHERE app_seq = $1 AND user_index = $2 AND remaining > 0"
    )
}

/// One lot (app $1, user $2, lot $3), whatever is left in it.
pub fn one_lot_sql() -> String {
    format!(
        "SELECT {LOT_COLUMNS} FROM points_lots
        WHERE app_seq = $1 AND user_index = $2 AND lot_id = $3"
    )
}

/// The user's unsettled holds (app $1, user $2): hold_id, allocation, times_out_us.
pub const HOLDS: &str = "SELECT hold_id, allocation, times_out_us FROM points_holds
    WHERE app_seq = $1 AND user_index = $2";

/// Appends an entry: app $1, user $2, kind $3, amount $4, reason $5, allocation $6,
/// at $7, cause $8/$9, refers to $10, shortfall $11; its seq.
pub const INSERT_ENTRY: &str = "INSERT INTO points_entries
    (app_seq, user_index, kind, amount, reason, allocation, created_us,
     cause_type, cause_id, refers_to, shortfall)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq";

/// A new lot: app $1, user $2, lot $3, amount $4, remaining $5, expiry $6, vesting $7.
pub const INSERT_LOT: &str = "INSERT INTO points_lots
    (app_seq, user_index, lot_id, amount, remaining, expires_us, vests_us, voided)
    VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE)";

/// Sets lot $6's remaining points $1, void mark $2, expired points $3 (app $4, user $5).
pub const UPDATE_LOT: &str = "UPDATE points_lots SET remaining = $1, voided = $2, expired = $3
    WHERE app_seq = $4 AND user_index = $5 AND lot_id = $6";

/// A new hold: app $1, user $2, hold $3, allocation $4, timeout $5.
pub const INSERT_HOLD: &str =
    "INSERT INTO points_holds (app_seq, user_index, hold_id, allocation, times_out_us)
    VALUES ($1, $2, $3, $4, $5)";

/// Drops hold $3 (app $1, user $2).
pub const DELETE_HOLD: &str =
    "DELETE FROM points_holds WHERE app_seq = $1 AND user_index = $2 AND hold_id = $3";

/// Stores the account's debt and cached figures: app $1, user $2, debt $3,
/// balance $4, pending $5, on hold $6, valid until $7, at $8.
pub const SAVE_ACCOUNT: &str = "INSERT INTO points_accounts
    (app_seq, user_index, debt, balance, pending, on_hold, valid_until_us, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (app_seq, user_index) DO UPDATE SET debt = excluded.debt,
    balance = excluded.balance, pending = excluded.pending, on_hold = excluded.on_hold,
    valid_until_us = excluded.valid_until_us, updated_us = excluded.updated_us";

/// Entry $2 of app $1: user_index, kind, allocation, refers_to.
pub const ENTRY: &str = "SELECT user_index, kind, allocation, refers_to
    FROM points_entries WHERE app_seq = $1 AND seq = $2";

/// The entry (seq, kind) that settled or undid entry $2 of app $1, if any.
pub const SETTLED_BY: &str = "SELECT seq, kind FROM points_entries
    WHERE app_seq = $1 AND refers_to = $2 AND kind IN ('capture', 'release', 'void', 'reverse')
    ORDER BY seq LIMIT 1";

/// A lot row: lot_id, amount, remaining, expires_us, vests_us, voided, expired.
pub type LotColumns = (i64, i64, i64, Option<i64>, Option<i64>, bool, i64);
/// A hold row: hold_id, allocation (JSON), times_out_us.
pub type HoldColumns = (i64, String, i64);

pub fn lot_of((id, amount, remaining, expires_us, vests_us, voided, expired): LotColumns) -> Lot {
    Lot {
        id: id as u64,
        amount,
        remaining,
        expires_us,
        vests_us,
        voided,
        expired,
    }
}

/// The domain's view of a user's lots, holds and debt.
pub fn points_of(
    lots: Vec<LotColumns>,
    holds: Vec<HoldColumns>,
    debt: i64,
) -> Result<Points, crate::StoreError> {
    let mut points = Points {
        debt,
        ..Default::default()
    };
    for columns in lots {
        let lot = lot_of(columns);
        points.lots.insert(lot.id, lot);
    }
    for (id, allocation, times_out_us) in holds {
        let taken: Allocation =
            serde_json::from_str(&allocation).map_err(crate::StoreError::internal)?;
        points.holds.insert(
            id as u64,
            Hold {
                id: id as u64,
                taken,
                times_out_us,
            },
        );
    }
    Ok(points)
}

/// Lots a plan may put points back into that a load of live lots misses: those
/// the holds and the operation took from, now possibly empty.
pub fn lots_to_load(points: &Points, op: &Op) -> Vec<i64> {
    let mut ids: Vec<u64> = points
        .holds
        .values()
        .flat_map(|h| h.taken.keys().copied())
        .chain(op.lots_needed())
        .filter(|id| !points.lots.contains_key(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| id as i64).collect()
}

/// The domain operation of a new entry.
pub fn op_of(action: &PointsAction) -> Op {
    match *action {
        PointsAction::Earn {
            amount,
            expires_us,
            vests_us,
        } => Op::Earn {
            amount,
            expires_us,
            vests_us,
        },
        PointsAction::Spend { amount } => Op::Spend { amount },
        PointsAction::Hold {
            amount,
            times_out_us,
        } => Op::Hold {
            amount,
            times_out_us,
        },
    }
}

/// An earlier entry as a settlement needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub user_index: i64,
    pub kind: String,
    pub allocation: Option<String>,
    pub refers_to: Option<i64>,
}

/// The domain operation a settlement of `target` (entry `entry`) is, or why there is none.
pub fn settle_op(
    entry: i64,
    target: &Target,
    action: Settlement,
    policy: ShortfallPolicy,
) -> Result<Op, PointsOutcome> {
    let allocation = || -> Result<Allocation, PointsOutcome> {
        target
            .allocation
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or(PointsOutcome::NotApplicable {
                kind: target.kind.clone(),
            })
    };
    let kind = EntryKind::parse(&target.kind);
    match (action, kind) {
        (Settlement::Capture, Some(EntryKind::Hold)) => Ok(Op::Capture { hold: entry as u64 }),
        (Settlement::Release, Some(EntryKind::Hold)) => Ok(Op::Release { hold: entry as u64 }),
        (Settlement::Reverse, Some(EntryKind::Earn)) => Ok(Op::ReverseEarn {
            lot: entry as u64,
            policy,
        }),
        (Settlement::Reverse, Some(EntryKind::Spend | EntryKind::Capture)) => {
            Ok(Op::ReverseSpend {
                entry: entry as u64,
                taken: allocation()?,
            })
        }
        _ => Err(PointsOutcome::NotApplicable {
            kind: target.kind.clone(),
        }),
    }
}

/// Why a settlement found its target already settled: `settled_by` is the entry
/// (seq, kind) that did it.
pub fn already_settled(action: Settlement, settled_by: (i64, String)) -> PointsOutcome {
    let (seq, kind) = settled_by;
    match action {
        Settlement::Capture | Settlement::Release => PointsOutcome::HoldSettled {
            how: if kind == "capture" {
                "captured".into()
            } else {
                "released".into()
            },
        },
        Settlement::Reverse => PointsOutcome::AlreadyReversed {
            by: transaction_id(seq),
        },
    }
}

/// One entry row to insert, in order; the plan's new lot and hold take the
/// seq of the last one.
pub struct EntryRow<'a> {
    pub kind: &'static str,
    pub amount: i64,
    pub reason: &'a str,
    pub allocation: Option<String>,
    pub cause: Cause,
    pub refers_to: Option<i64>,
    pub shortfall: i64,
}

/// The rows of a plan's entries: the operation's own entry (the last, unless
/// the plan is a sweep's) carries the request's reason and cause; those time
/// settled first carry their own.
pub fn entry_rows<'a>(plan: &Plan, op: &Op, reason: &'a str, cause: &Cause) -> Vec<EntryRow<'a>> {
    let own_index = (*op != Op::Sweep).then(|| plan.entries.len().saturating_sub(1));
    plan.entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let own = Some(i) == own_index;
            let (reason, cause) = if own {
                (reason, cause.clone())
            } else if entry.kind == EntryKind::Expire {
                ("expired", Cause::new("expiry", None))
            } else {
                ("hold timed out", Cause::new("hold_timeout", None))
            };
            EntryRow {
                kind: entry.kind.as_str(),
                amount: entry.amount,
                reason,
                allocation: entry
                    .allocation
                    .as_ref()
                    .map(|a| serde_json::to_string(a).expect("a map of integers")),
                cause,
                refers_to: entry.refers_to.map(|r| r as i64),
                shortfall: entry.shortfall,
            }
        })
        .collect()
}

/// The lot and hold the plan created, renamed to the entry that created them.
pub fn renamed(plan: &Plan, seq: i64) -> (Option<Lot>, Option<Hold>) {
    let rename = |id: u64| if id == NEW_ID { seq as u64 } else { id };
    (
        plan.new_lot.clone().map(|l| Lot {
            id: rename(l.id),
            ..l
        }),
        plan.new_hold.clone().map(|h| Hold {
            id: rename(h.id),
            ..h
        }),
    )
}

/// `points` after `plan` was written with `seq` as its own entry's number: what
/// the next operation on the same user in one batch starts from.
pub fn apply(points: &mut Points, plan: &Plan, seq: i64) {
    for lot in &plan.changed_lots {
        points.lots.insert(lot.id, lot.clone());
    }
    for hold in &plan.settled_holds {
        points.holds.remove(hold);
    }
    let (lot, hold) = renamed(plan, seq);
    if let Some(lot) = lot {
        points.lots.insert(lot.id, lot);
    }
    if let Some(hold) = hold {
        points.holds.insert(hold.id, hold);
    }
    points.debt = plan.debt;
}

pub fn receipt_of(plan: &Plan, seq: i64) -> PointsReceipt {
    let own = plan.entries.last();
    let Summary {
        balance,
        pending,
        on_hold,
        debt,
        ..
    } = plan.summary;
    PointsReceipt {
        transaction_id: transaction_id(seq),
        kind: own.map_or("sweep", |e| e.kind.as_str()).to_string(),
        amount: own.map_or(0, |e| e.amount),
        balance,
        pending,
        on_hold,
        debt,
        shortfall: own.map_or(0, |e| e.shortfall),
    }
}

const TRANSACTION_PREFIX: &str = "ptx_";

/// The transaction id an entry is known by.
pub fn transaction_id(seq: i64) -> String {
    format!("{TRANSACTION_PREFIX}{seq}")
}

/// The entry a transaction id names, if it is one.
pub fn parse_transaction_id(id: &str) -> Option<i64> {
    numbered(id, TRANSACTION_PREFIX)
}

/// The positive number after `prefix` in an id such as `ptx_42`.
pub fn numbered(id: &str, prefix: &str) -> Option<i64> {
    id.strip_prefix(prefix)
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
}

/// A user's points now, as `GET /v1/users/{id}/points` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointsSummary {
    pub balance: i64,
    pub pending: i64,
    pub on_hold: i64,
    pub debt: i64,
    /// Of the balance, what expires within 30 days.
    pub expiring_30_days: i64,
    /// The soonest expiry among the points that count, if any.
    pub next_expiry_us: Option<i64>,
}

const THIRTY_DAYS_US: i64 = 30 * 86_400_000_000;

/// What a user's lots, holds and debt come to at `now_us` (holds past their
/// timeout count as released, as the next write will record).
pub fn summary_of(mut points: Points, now_us: i64) -> PointsSummary {
    points.release_timed_out(now_us);
    let Summary {
        balance,
        pending,
        on_hold,
        debt,
        ..
    } = points.summary(now_us);
    PointsSummary {
        balance,
        pending,
        on_hold,
        debt,
        expiring_30_days: points.expiring(now_us, now_us + THIRTY_DAYS_US),
        next_expiry_us: points
            .lots
            .values()
            .filter(|l| l.remaining > 0 && !l.voided)
            .filter_map(|l| l.expires_us)
            .filter(|e| *e > now_us)
            .min(),
    }
}

/// One ledger entry as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsEntry {
    pub seq: i64,
    pub kind: String,
    pub amount: i64,
    pub reason: String,
    /// Which lots (earn transaction ids) gave or got how many points.
    pub allocation: Option<String>,
    pub created_us: i64,
    pub cause: Cause,
    pub refers_to: Option<i64>,
    pub shortfall: i64,
}

/// The columns of [`HISTORY`].
pub type EntryColumns = (
    i64,
    String,
    i64,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    Option<i64>,
    i64,
);

/// User $2's entries of app $1 before seq $3, newest first, at most $4.
pub const HISTORY: &str = "SELECT seq, kind, amount, reason, allocation, created_us,
    cause_type, cause_id, refers_to, shortfall FROM points_entries
    WHERE app_seq = $1 AND user_index = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4";

pub fn entry_of(
    (seq, kind, amount, reason, allocation, created_us, cause_type, cause_id, refers_to, shortfall): EntryColumns,
) -> PointsEntry {
    PointsEntry {
        seq,
        kind,
        amount,
        reason,
        allocation,
        created_us,
        cause: Cause {
            kind: cause_type,
            id: cause_id,
        },
        refers_to,
        shortfall,
    }
}

/// An app's points policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsPolicy {
    /// When earns without `expires_at` expire.
    pub expiry: ExpiryPolicy,
    /// A clawback beyond what is left of the earn.
    pub shortfall: ShortfallPolicy,
}

impl Default for PointsPolicy {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::Never,
            shortfall: ShortfallPolicy::AllowDebt,
        }
    }
}

/// App $1's policy: expiry (JSON), shortfall.
pub const GET_SETTINGS: &str = "SELECT expiry, shortfall FROM points_settings WHERE app_seq = $1";

/// Stores app $1's policy: expiry $2, shortfall $3, at $4.
pub const PUT_SETTINGS: &str =
    "INSERT INTO points_settings (app_seq, expiry, shortfall, updated_us) VALUES ($1, $2, $3, $4)
    ON CONFLICT (app_seq) DO UPDATE SET expiry = excluded.expiry,
    shortfall = excluded.shortfall, updated_us = excluded.updated_us";

pub fn shortfall_name(policy: ShortfallPolicy) -> &'static str {
    match policy {
        ShortfallPolicy::AllowDebt => "allow_debt",
        ShortfallPolicy::Cap => "cap",
    }
}

/// A stored policy, parsed back (none stored: the default).
pub fn policy_of(stored: Option<(String, String)>) -> Result<PointsPolicy, crate::StoreError> {
    let Some((expiry, shortfall)) = stored else {
        return Ok(PointsPolicy::default());
    };
    Ok(PointsPolicy {
        expiry: serde_json::from_str(&expiry).map_err(crate::StoreError::internal)?,
        shortfall: if shortfall == "cap" {
            ShortfallPolicy::Cap
        } else {
            ShortfallPolicy::AllowDebt
        },
    })
}

/// Accounts whose cached figures ran out (a lot vested or expired) or whose holds
/// timed out, by $1, at most $2: app_seq, user_index.
pub const DUE_ACCOUNTS: &str = "SELECT app_seq, user_index FROM points_accounts
    WHERE valid_until_us <= $1
    UNION SELECT app_seq, user_index FROM points_holds WHERE times_out_us <= $1
    LIMIT $2";

/// What an app owes in points, for `GET /v1/loyalty/liability`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Liability {
    /// Spendable now, all users (live lots less debt).
    pub outstanding: i64,
    pub pending: i64,
    pub on_hold: i64,
    pub debt: i64,
    /// Of the live points, what expires within the first and second horizon.
    pub expiring: [i64; 2],
    /// Per period asked for: Σ amount by entry kind.
    pub periods: Vec<std::collections::BTreeMap<String, i64>>,
}

/// App $1's lots at $2: live, pending, expiring before $3 and before $4.
pub const LIABILITY_LOTS: &str = "WITH q AS (SELECT $1 AS app, $2 AS now, $3 AS h1, $4 AS h2)
    SELECT
      CAST(COALESCE(SUM(CASE WHEN (vests_us IS NULL OR vests_us <= q.now)
            AND (expires_us IS NULL OR expires_us > q.now) THEN remaining ELSE 0 END), 0) AS BIGINT),
      CAST(COALESCE(SUM(CASE WHEN vests_us > q.now THEN remaining ELSE 0 END), 0) AS BIGINT),
      CAST(COALESCE(SUM(CASE WHEN (vests_us IS NULL OR vests_us <= q.now)
            AND expires_us > q.now AND expires_us <= q.h1 THEN remaining ELSE 0 END), 0) AS BIGINT),
      CAST(COALESCE(SUM(CASE WHEN (vests_us IS NULL OR vests_us <= q.now)
            AND expires_us > q.now AND expires_us <= q.h2 THEN remaining ELSE 0 END), 0) AS BIGINT)
    FROM points_lots, q WHERE app_seq = q.app AND remaining > 0 AND NOT voided";

/// App $1's accounts: Σ debt, Σ on hold.
pub const LIABILITY_ACCOUNTS: &str = "SELECT CAST(COALESCE(SUM(debt), 0) AS BIGINT),
    CAST(COALESCE(SUM(on_hold), 0) AS BIGINT) FROM points_accounts WHERE app_seq = $1";

/// App $1's entries in [$2, $3): kind, Σ amount.
pub const LIABILITY_PERIOD: &str = "SELECT kind, CAST(SUM(amount) AS BIGINT) FROM points_entries
    WHERE app_seq = $1 AND created_us >= $2 AND created_us < $3 GROUP BY kind";
