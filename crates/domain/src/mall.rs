//! The redemption mall's rules, without storage: what a reward is, and whether
//! a user may redeem it now.
//!
//! A redemption runs as one transaction in the store: points held, one unit of
//! stock (or one pool code) reserved by a conditional update, the reward
//! issued, the hold captured. So a crash leaves either all of it or none, two
//! redeemers can never both take the last unit, and stock never goes below 0.

use crate::FieldError;
use serde::{Deserialize, Serialize};

const MAX_NAME_CHARS: usize = 40;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_POINTS_PRICE: i64 = 1_000_000_000;
/// A hundred million yuan.
const MAX_CASH_FEN: i64 = 10_000_000_000;
const MAX_STOCK: i64 = 100_000_000;
/// Longest coupon code accepted.
pub const MAX_CODE_CHARS: usize = 64;

/// What the user gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// A code from the reward's imported pool, each issued at most once.
    CouponCode,
    /// Goods to ship: the redemption waits for fulfilment.
    Physical,
    /// Issued at once by the app's own systems (a membership day, a badge).
    Virtual,
}

impl RewardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CouponCode => "coupon_code",
            Self::Physical => "physical",
            Self::Virtual => "virtual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::CouponCode, Self::Physical, Self::Virtual]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A reward as configured (`PUT /v1/rewards/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub kind: RewardKind,
    /// Points one redemption costs.
    pub points_price: i64,
    /// A cash part paid outside huiliu (points + cash offers), in fen.
    #[serde(default)]
    pub cash_price_fen: Option<i64>,
    /// Units left to redeem (none: unlimited). Coupon-code rewards take their
    /// stock from the pool and leave this out.
    #[serde(default)]
    pub stock: Option<i64>,
    /// Redemptions one user may make (cancelled ones do not count).
    #[serde(default)]
    pub per_user_limit: Option<u32>,
    /// Only members of this tier or above may redeem.
    #[serde(default)]
    pub min_tier: Option<String>,
    /// Redeemable from / until (RFC 3339).
    #[serde(default)]
    pub starts_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub ends_at: Option<jiff::Timestamp>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

impl RewardSpec {
    pub fn validate(&self) -> Result<(), FieldError> {
        let bad = |field: &str, message: String| FieldError::new("invalid_reward", field, message);
        let name = self.name.trim().chars().count();
        if name == 0 || name > MAX_NAME_CHARS {
            return Err(bad("name", format!("1–{MAX_NAME_CHARS} characters")));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            return Err(bad(
                "description",
                format!("at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if !(1..=MAX_POINTS_PRICE).contains(&self.points_price) {
            return Err(bad("points_price", format!("1–{MAX_POINTS_PRICE} points")));
        }
        if self
            .cash_price_fen
            .is_some_and(|f| !(1..=MAX_CASH_FEN).contains(&f))
        {
            return Err(bad("cash_price_fen", format!("1–{MAX_CASH_FEN} fen")));
        }
        match (self.kind, self.stock) {
            (RewardKind::CouponCode, Some(_)) => {
                return Err(bad(
                    "stock",
                    "a coupon-code reward's stock is its pool of codes".into(),
                ))
            }
            (_, Some(stock)) if !(0..=MAX_STOCK).contains(&stock) => {
                return Err(bad("stock", format!("0–{MAX_STOCK}")))
            }
            _ => {}
        }
        if self.per_user_limit == Some(0) {
            return Err(bad("per_user_limit", "at least 1 (or leave it out)".into()));
        }
        if let (Some(from), Some(until)) = (self.starts_at, self.ends_at) {
            if until <= from {
                return Err(bad("ends_at", "after starts_at".into()));
            }
        }
        Ok(())
    }
}

/// Why a redemption is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Inactive,
    NotStarted,
    Ended,
    /// The member's tier is below the reward's.
    TierRequired {
        tier: String,
    },
    LimitReached {
        limit: u32,
    },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Inactive => "reward_inactive",
            Self::NotStarted => "reward_not_started",
            Self::Ended => "reward_ended",
            Self::TierRequired { .. } => "tier_required",
            Self::LimitReached { .. } => "redemption_limit_reached",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Inactive => "the reward is not offered now".into(),
            Self::NotStarted => "the reward is not redeemable yet".into(),
            Self::Ended => "the reward's redemption window has ended".into(),
            Self::TierRequired { tier } => format!("members of tier {tier:?} or above only"),
            Self::LimitReached { limit } => {
                format!("each user may redeem this reward {limit} times")
            }
        }
    }
}

/// Whether the user may redeem `reward` at `now`: `tier_allows` says whether
/// their tier meets `min_tier` (ignored when the reward has none);
/// `redeemed` counts their redemptions of it that were not cancelled.
pub fn check(
    reward: &RewardSpec,
    now: jiff::Timestamp,
    tier_allows: bool,
    redeemed: u32,
) -> Result<(), Refusal> {
    if !reward.active {
        return Err(Refusal::Inactive);
    }
    if reward.starts_at.is_some_and(|s| now < s) {
        return Err(Refusal::NotStarted);
    }
    if reward.ends_at.is_some_and(|e| now >= e) {
        return Err(Refusal::Ended);
    }
    if let Some(tier) = &reward.min_tier {
        if !tier_allows {
            return Err(Refusal::TierRequired { tier: tier.clone() });
        }
    }
    if let Some(limit) = reward.per_user_limit {
        if redeemed >= limit {
            return Err(Refusal::LimitReached { limit });
        }
    }
    Ok(())
}

/// Checks imported coupon codes: trimmed, 1–64 characters, printable; the
/// error names the first bad one by index.
pub fn clean_codes(codes: &[String]) -> Result<Vec<String>, FieldError> {
    codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let code = code.trim();
            let n = code.chars().count();
            if n == 0 || n > MAX_CODE_CHARS || code.chars().any(char::is_control) {
                Err(FieldError::new(
                    "invalid_code",
                    format!("codes[{i}]"),
                    format!("a code is 1–{MAX_CODE_CHARS} printable characters"),
                ))
            } else {
                Ok(code.to_string())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reward() -> RewardSpec {
        serde_json::from_value(serde_json::json!({
            "name": "星巴克中杯券", "kind": "coupon_code", "points_price": 500
        }))
        .unwrap()
    }

    #[test]
    fn rewards_are_validated_field_by_field() {
        assert_eq!(reward().validate(), Ok(()));
        let field = |r: RewardSpec| r.validate().unwrap_err().field.unwrap();
        assert_eq!(
            field(RewardSpec {
                name: "一".repeat(41),
                ..reward()
            }),
            "name"
        );
        assert_eq!(
            RewardSpec {
                name: "一".repeat(40),
                ..reward()
            }
            .validate(),
            Ok(()),
            "characters, not bytes"
        );
        assert_eq!(
            field(RewardSpec {
                points_price: 0,
                ..reward()
            }),
            "points_price"
        );
        assert_eq!(
            field(RewardSpec {
                stock: Some(10),
                ..reward()
            }),
            "stock"
        );
        assert_eq!(
            field(RewardSpec {
                kind: RewardKind::Physical,
                stock: Some(-1),
                ..reward()
            }),
            "stock"
        );
        assert_eq!(
            field(RewardSpec {
                per_user_limit: Some(0),
                ..reward()
            }),
            "per_user_limit"
        );
        let now = jiff::Timestamp::now();
        assert_eq!(
            field(RewardSpec {
                starts_at: Some(now),
                ends_at: Some(now),
                ..reward()
            }),
            "ends_at"
        );
        assert!(serde_json::from_value::<RewardSpec>(
            serde_json::json!({"name": "x", "kind": "coupon_code", "points_price": 1, "prise": 2})
        )
        .is_err());
    }

    #[test]
    fn a_redemption_needs_an_open_window_the_tier_and_room_under_the_limit() {
        let now: jiff::Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
        let r = RewardSpec {
            min_tier: Some("gold".into()),
            per_user_limit: Some(2),
            starts_at: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            ends_at: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            ..reward()
        };
        assert_eq!(check(&r, now, true, 1), Ok(()));
        assert_eq!(
            check(&r, now, true, 2),
            Err(Refusal::LimitReached { limit: 2 })
        );
        assert_eq!(
            check(&r, now, false, 0),
            Err(Refusal::TierRequired {
                tier: "gold".into()
            })
        );
        assert_eq!(
            check(&r, "2026-10-31T23:59:59Z".parse().unwrap(), true, 0),
            Err(Refusal::NotStarted)
        );
        assert_eq!(
            check(&r, "2026-12-01T00:00:00Z".parse().unwrap(), true, 0),
            Err(Refusal::Ended)
        );
        assert_eq!(
            check(
                &RewardSpec {
                    active: false,
                    ..r.clone()
                },
                now,
                true,
                0
            ),
            Err(Refusal::Inactive)
        );
    }

    #[test]
    fn codes_are_trimmed_and_checked() {
        assert_eq!(
            clean_codes(&[" A1 ".into(), "券-2".into()]),
            Ok(vec!["A1".into(), "券-2".into()])
        );
        let error = clean_codes(&["ok".into(), " ".into()]).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("codes[1]"));
        assert!(clean_codes(&["x".repeat(65)]).is_err());
    }
}
