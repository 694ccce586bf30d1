//! Records and SQL of the points ledger, shared by both stores. Placeholders
//! appear in numeric order (SQLite binds them by first appearance).

use crate::IdempotencyKey;
use huiliu_domain::ids::UserId;

/// The idempotency scope of `POST /v1/points/transactions`.
pub const POINTS_SCOPE: &str = "points";

/// One points transaction: an earn (positive) or a spend (negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsRequest {
    pub user_id: UserId,
    pub amount: i64,
    pub reason: String,
    /// An earn's expiry (none: never).
    pub expires_us: Option<i64>,
    pub now_us: i64,
    pub idempotency: IdempotencyKey,
}

/// What `POST /v1/points/transactions` answers, kept to answer a replay the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PointsReceipt {
    pub transaction_id: String,
    /// Spendable points right after the transaction.
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointsOutcome {
    Done(PointsReceipt),
    Replayed(PointsReceipt),
    KeyReused,
    UnknownUser,
    /// A spend beyond the balance; nothing written.
    Insufficient {
        available: i64,
    },
}

/// A user's points now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointsSummary {
    pub balance: i64,
    pub debt: i64,
    /// Of the balance, what expires within 30 days.
    pub expiring_30_days: i64,
}

/// User $2 of app $1: user_index.
pub const USER_INDEX: &str = "SELECT user_index FROM users WHERE app_seq = $1 AND user_id = $2";

/// Makes sure user $2 of app $1 has an account row (at $3).
pub const ENSURE_ACCOUNT: &str =
    "INSERT INTO points_accounts (app_seq, user_index, debt, updated_us)
    VALUES ($1, $2, 0, $3) ON CONFLICT (app_seq, user_index) DO NOTHING";

/// The user's debt (app $1, user $2).
pub const ACCOUNT_DEBT: &str =
    "SELECT debt FROM points_accounts WHERE app_seq = $1 AND user_index = $2";

/// The user's lots with points left (app $1, user $2): lot_id, amount, remaining, expires_us.
pub const LIVE_LOTS: &str = "SELECT lot_id, amount, remaining, expires_us FROM points_lots
    WHERE app_seq = $1 AND user_index = $2 AND remaining > 0";

/// Appends an entry: app $1, user $2, kind $3, amount $4, reason $5, allocation $6, at $7; its seq.
pub const INSERT_ENTRY: &str = "INSERT INTO points_entries
    (app_seq, user_index, kind, amount, reason, allocation, created_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq";

/// A new lot: app $1, user $2, lot $3, amount $4, remaining $5, expiry $6.
pub const INSERT_LOT: &str =
    "INSERT INTO points_lots (app_seq, user_index, lot_id, amount, remaining, expires_us)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// Sets lot $4's remaining points to $1 (app $2, user $3).
pub const SET_LOT_REMAINING: &str =
    "UPDATE points_lots SET remaining = $1 WHERE app_seq = $2 AND user_index = $3 AND lot_id = $4";

/// Sets the account's debt $1 at $2 (app $3, user $4).
pub const SET_DEBT: &str =
    "UPDATE points_accounts SET debt = $1, updated_us = $2 WHERE app_seq = $3 AND user_index = $4";

/// A lot row: lot_id, amount, remaining, expires_us.
pub type LotColumns = (i64, i64, i64, Option<i64>);

/// The domain's view of a user's lots and debt.
pub fn points_of(lots: Vec<LotColumns>, debt: i64) -> huiliu_domain::points::Points {
    let mut points = huiliu_domain::points::Points {
        debt,
        ..Default::default()
    };
    for (id, amount, remaining, expires_us) in lots {
        points.lots.insert(
            id as u64,
            huiliu_domain::points::Lot {
                id: id as u64,
                amount,
                remaining,
                expires_us,
                vests_us: None,
                voided: false,
            },
        );
    }
    points
}

/// The transaction id an entry is known by.
pub fn transaction_id(seq: i64) -> String {
    format!("ptx_{seq}")
}

const THIRTY_DAYS_US: i64 = 30 * 86_400_000_000;

/// What a user's lots and debt come to at `now_us`.
pub fn summary_of(lots: Vec<LotColumns>, debt: i64, now_us: i64) -> PointsSummary {
    let points = points_of(lots, debt);
    PointsSummary {
        balance: points.balance(now_us),
        debt,
        expiring_30_days: points.expiring(now_us, now_us + THIRTY_DAYS_US),
    }
}

/// One ledger entry as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsEntry {
    pub seq: i64,
    /// `earn` or `spend`.
    pub kind: String,
    pub amount: i64,
    pub reason: String,
    /// For a spend: which lots (earn transaction ids) paid how much.
    pub allocation: Option<String>,
    pub created_us: i64,
}

/// The columns of [`HISTORY`].
pub type EntryColumns = (i64, String, i64, String, Option<String>, i64);

/// User $2's entries of app $1 before seq $3, newest first, at most $4.
pub const HISTORY: &str =
    "SELECT seq, kind, amount, reason, allocation, created_us FROM points_entries
    WHERE app_seq = $1 AND user_index = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4";

pub fn entry_of((seq, kind, amount, reason, allocation, created_us): EntryColumns) -> PointsEntry {
    PointsEntry {
        seq,
        kind,
        amount,
        reason,
        allocation,
        created_us,
    }
}

/// App $1's default expiry policy (JSON).
pub const GET_SETTINGS: &str = "SELECT expiry FROM points_settings WHERE app_seq = $1";

/// Stores app $1's default expiry policy $2 at $3.
pub const PUT_SETTINGS: &str =
    "INSERT INTO points_settings (app_seq, expiry, updated_us) VALUES ($1, $2, $3)
    ON CONFLICT (app_seq) DO UPDATE SET expiry = excluded.expiry, updated_us = excluded.updated_us";

/// A stored policy, parsed back (none stored: points never expire).
pub fn policy_of(
    stored: Option<String>,
) -> Result<huiliu_domain::points::ExpiryPolicy, crate::StoreError> {
    stored.map_or(Ok(huiliu_domain::points::ExpiryPolicy::Never), |text| {
        serde_json::from_str(&text).map_err(crate::StoreError::internal)
    })
}
