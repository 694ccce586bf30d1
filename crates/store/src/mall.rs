//! Records and SQL of the redemption mall, shared by both stores.
//! Placeholders appear in numeric order (SQLite binds them by first appearance).

use crate::points::Cause;
use crate::IdempotencyKey;
use huiliu_domain::ids::UserId;
use huiliu_domain::mall::{Refusal, RewardSpec};

/// The idempotency scope of `POST /v1/redemptions`.
pub const REDEMPTION_SCOPE: &str = "redemption";
/// How long a redemption's hold lasts: the whole redemption is one
/// transaction, so this only bounds a hold the transaction could not settle.
pub const REDEMPTION_HOLD_US: i64 = 15 * 60 * 1_000_000;

/// A reward as stored, with what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub key: String,
    pub spec: RewardSpec,
    /// Units left (coupon codes: unissued codes in the pool); `None`: unlimited.
    pub available: Option<i64>,
    pub redeemed: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemRequest {
    pub user_id: UserId,
    pub reward_key: String,
    pub now_us: i64,
    pub idempotency: IdempotencyKey,
}

/// A redemption as the API shows it (kept as the answer to a replay).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redemption {
    pub redemption_id: i64,
    pub user_id: String,
    pub reward_key: String,
    pub kind: String,
    pub points: i64,
    pub cash_price_fen: Option<i64>,
    /// `completed`, `awaiting_fulfilment`, `fulfilled` or `cancelled`.
    pub status: String,
    pub code: Option<String>,
    /// The ledger entries: the hold, its capture, and the refund if cancelled.
    pub hold_id: i64,
    pub capture_id: i64,
    pub refund_id: Option<i64>,
    /// The user's spendable points right after the redemption or action
    /// (absent when the redemption is only read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    Done(Redemption),
    Replayed(Redemption),
    KeyReused,
    UnknownUser,
    UnknownReward,
    Refused(Refusal),
    SoldOut,
    Insufficient { available: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedemptionAction {
    /// Undo: points back to their lots, the unit back in stock (a coupon code,
    /// once shown, is never given out again).
    Cancel,
    /// A physical reward was shipped.
    Fulfil,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Done(Redemption),
    Unknown,
    /// The redemption's status does not allow the action.
    Conflict {
        status: String,
    },
}

/// Reward $2 of app $1: spec, kind, stock, redeemed.
pub const REWARD: &str =
    "SELECT spec, stock, redeemed FROM rewards WHERE app_seq = $1 AND reward_key = $2";

/// App $1's rewards: key, spec, stock, redeemed, free codes.
pub const REWARDS: &str = "SELECT r.reward_key, r.spec, r.stock, r.redeemed,
    (SELECT count(*) FROM coupon_codes c WHERE c.app_seq = r.app_seq
        AND c.reward_key = r.reward_key AND c.redemption_id IS NULL)
    FROM rewards r WHERE r.app_seq = $1 ORDER BY r.reward_key";

/// Unissued codes of reward $2 (app $1).
pub const FREE_CODES: &str = "SELECT count(*) FROM coupon_codes
    WHERE app_seq = $1 AND reward_key = $2 AND redemption_id IS NULL";

/// Stores reward $2 of app $1: spec $3, kind $4, price $5, stock $6, at $7.
pub const PUT_REWARD: &str = "INSERT INTO rewards
    (app_seq, reward_key, spec, kind, points_price, stock, redeemed, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7)
    ON CONFLICT (app_seq, reward_key) DO UPDATE SET spec = excluded.spec, kind = excluded.kind,
    points_price = excluded.points_price, stock = excluded.stock, updated_us = excluded.updated_us";

/// Adds code $3 to reward $2's pool (app $1) at $4; nothing if it is there.
pub const ADD_CODE: &str =
    "INSERT INTO coupon_codes (app_seq, reward_key, code, redemption_id, imported_us)
    VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (app_seq, reward_key, code) DO NOTHING";

/// The user's redemptions of reward $3 that count toward its limit (app $1, user $2).
pub const REDEEMED_BY_USER: &str = "SELECT count(*) FROM redemptions
    WHERE app_seq = $1 AND user_index = $2 AND reward_key = $3 AND status <> 'cancelled'";

/// Takes one unit of reward $2 (app $1) if any is left; 0 rows: sold out.
pub const TAKE_UNIT: &str = "UPDATE rewards SET stock = stock - 1, redeemed = redeemed + 1
    WHERE app_seq = $1 AND reward_key = $2 AND (stock IS NULL OR stock > 0)";

/// Adds $1 units (negative: withdraws) to reward $3 of app $2 if it keeps a
/// count and the count stays ≥ 0; the units left.
pub const RESTOCK: &str = "UPDATE rewards SET stock = stock + $1
    WHERE app_seq = $2 AND reward_key = $3 AND stock IS NOT NULL AND stock + $1 >= 0
    RETURNING stock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restocked {
    /// Units left now.
    Done(i64),
    UnknownReward,
    /// Unlimited or coupon-code stock has no count to change.
    NotCounted,
    /// Fewer units are left than the withdrawal asks for.
    Insufficient {
        available: i64,
    },
}

/// Returns a unit of reward $2 (app $1).
pub const RETURN_UNIT: &str = "UPDATE rewards SET stock = stock + 1, redeemed = redeemed - 1
    WHERE app_seq = $1 AND reward_key = $2";

/// A new redemption: app $1, user $2, reward $3, kind $4, points $5, cash $6, at $7; its id.
pub const INSERT_REDEMPTION: &str = "INSERT INTO redemptions
    (app_seq, user_index, reward_key, kind, points, cash_fen, status, hold_id, capture_id, created_us, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, $7) RETURNING redemption_id";

/// Completes redemption $6: status $1, hold $2, capture $3, code $4, at $5.
pub const COMPLETE_REDEMPTION: &str = "UPDATE redemptions SET status = $1, hold_id = $2,
    capture_id = $3, code = $4, updated_us = $5 WHERE redemption_id = $6";

/// Sets redemption $4's status $1, refund $2, at $3.
pub const SET_REDEMPTION_STATUS: &str = "UPDATE redemptions SET status = $1,
    refund_id = COALESCE($2, refund_id), updated_us = $3 WHERE redemption_id = $4";

/// Redemption $2 of app $1, with its user's id.
pub const REDEMPTION: &str = "SELECT r.redemption_id, u.user_id, r.reward_key, r.kind, r.points,
    r.cash_fen, r.status, r.code, r.hold_id, r.capture_id, r.refund_id, r.created_us, r.updated_us,
    r.user_index
    FROM redemptions r JOIN users u ON u.app_seq = r.app_seq AND u.user_index = r.user_index
    WHERE r.app_seq = $1 AND r.redemption_id = $2";

/// The columns of [`REDEMPTION`].
pub type RedemptionColumns = (
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
);

/// A stored redemption and its user's index.
pub fn redemption_of(c: RedemptionColumns, balance: Option<i64>) -> (Redemption, i64) {
    (
        Redemption {
            redemption_id: c.0,
            user_id: c.1,
            reward_key: c.2,
            kind: c.3,
            points: c.4,
            cash_price_fen: c.5,
            status: c.6,
            code: c.7,
            hold_id: c.8,
            capture_id: c.9,
            refund_id: c.10,
            balance,
            created_us: c.11,
            updated_us: c.12,
        },
        c.13,
    )
}

pub fn reward_of(
    key: String,
    spec: &str,
    stock: Option<i64>,
    redeemed: i64,
    free_codes: i64,
) -> Result<Reward, crate::StoreError> {
    let spec: RewardSpec = serde_json::from_str(spec).map_err(crate::StoreError::internal)?;
    let available = match spec.kind {
        huiliu_domain::mall::RewardKind::CouponCode => Some(free_codes),
        _ => stock,
    };
    Ok(Reward {
        key,
        spec,
        available,
        redeemed,
    })
}

/// What a redemption's ledger entries name as their cause.
pub fn redemption_cause(id: i64) -> Cause {
    Cause::new("redemption", Some(redemption_id(id)))
}

const REDEMPTION_PREFIX: &str = "rdm_";

/// The id a redemption is known by.
pub fn redemption_id(id: i64) -> String {
    format!("{REDEMPTION_PREFIX}{id}")
}

/// The redemption an id names, if it is one.
pub fn parse_redemption_id(id: &str) -> Option<i64> {
    crate::points::numbered(id, REDEMPTION_PREFIX)
}

/// The status a fresh redemption of `kind` ends in.
pub fn status_after_issue(kind: huiliu_domain::mall::RewardKind) -> &'static str {
    match kind {
        huiliu_domain::mall::RewardKind::Physical => "awaiting_fulfilment",
        _ => "completed",
    }
}
