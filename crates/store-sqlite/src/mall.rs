//! The redemption mall and member tiers on SQLite. Every write is one writer
//! job: checks and writes of a redemption cannot interleave with another, so
//! the stock and pool checks made before writing hold until the commit.

use crate::points::{load, remember, user_index, write};
use crate::writer::to_store_error;
use huiliu_domain::mall::{self, RewardKind, RewardSpec};
use huiliu_domain::points::ledger::{plan, Op};
use huiliu_domain::points::PointsError;
use huiliu_domain::tiers::TierConfig;
use huiliu_domain::time::AppTimeZone;
use huiliu_store::mall::{
    self as m, ActionOutcome, RedeemOutcome, RedeemRequest, Redemption, RedemptionAction,
};
use huiliu_store::points as p;
use huiliu_store::tiers::{self as t, GrowthOutcome, GrowthRequest, Loaded, Membership};
use huiliu_store::{Earlier, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

// ---- tiers ----

pub(crate) fn load_member(tx: &Connection, app_seq: i64, user: i64) -> StoreResult<Loaded> {
    let latest = tx
        .query_row(t::LATEST_CONFIG, params![app_seq], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(to_store_error)?
        .map(|(v, c)| t::config_of(&c).map(|c| (v, c)))
        .transpose()?;
    let member: Option<t::MemberColumns> = tx
        .query_row(t::MEMBER, params![app_seq, user], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(to_store_error)?;
    let judged_under = match (&member, &latest) {
        (Some((_, _, _, v)), Some((latest, _))) if v != latest => tx
            .query_row(t::CONFIG_VERSION, params![app_seq, v], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(to_store_error)?
            .map(|c| t::config_of(&c))
            .transpose()?,
        _ => None,
    };
    let growth = tx
        .prepare_cached(t::GROWTH)
        .and_then(|mut s| {
            s.query_map(params![app_seq, user], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    Ok(Loaded {
        latest,
        member,
        judged_under,
        growth,
    })
}

/// Judges the member now and stores the result; the loaded facts.
pub(crate) fn judge(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    zone: &AppTimeZone,
    now: i64,
) -> StoreResult<Loaded> {
    let mut loaded = load_member(tx, app_seq, user)?;
    if let Some((evaluation, version)) = t::standing(&loaded, now, zone) {
        if t::changed(&loaded, &evaluation, version) {
            let s = &evaluation.state;
            tx.execute(
                t::PUT_MEMBER,
                params![
                    app_seq,
                    user,
                    s.tier,
                    s.since_us,
                    s.grace_until_us,
                    version,
                    now
                ],
            )
            .map_err(to_store_error)?;
            loaded.member = Some((s.tier.clone(), s.since_us, s.grace_until_us, version));
            loaded.judged_under = None;
        }
    }
    Ok(loaded)
}

/// Judges the members whose grace ended by `now`; how many.
pub(crate) fn sweep_grace(tx: &Connection, now: i64, limit: i64) -> StoreResult<usize> {
    let due: Vec<(i64, i64, String)> = tx
        .prepare_cached(t::GRACE_ENDED)
        .and_then(|mut s| {
            s.query_map(params![now, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    for (app_seq, user, zone) in &due {
        let zone = AppTimeZone::parse(zone).map_err(|e| StoreError::internal(e.message))?;
        judge(tx, *app_seq, *user, &zone, now)?;
    }
    Ok(due.len())
}

pub(crate) fn put_tier_config(
    tx: &Connection,
    app_seq: i64,
    config: &TierConfig,
    now: i64,
) -> StoreResult<i64> {
    let version: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM tier_configs WHERE app_seq = $1",
            params![app_seq],
            |r| r.get(0),
        )
        .map_err(to_store_error)?;
    let text = serde_json::to_string(config).map_err(StoreError::internal)?;
    tx.execute(t::INSERT_CONFIG, params![app_seq, version, text, now])
        .map_err(to_store_error)?;
    Ok(version)
}

pub(crate) fn membership(
    tx: &Connection,
    app_seq: i64,
    user_id: &str,
    zone: &AppTimeZone,
    now: i64,
) -> StoreResult<Option<Membership>> {
    let Some(user) = user_index(tx, app_seq, user_id)? else {
        return Ok(None);
    };
    let loaded = judge(tx, app_seq, user, zone, now)?;
    Ok(Some(t::membership(&loaded, now, zone)))
}

pub(crate) fn add_growth(
    tx: &Connection,
    app_seq: i64,
    zone: &AppTimeZone,
    request: &GrowthRequest,
) -> StoreResult<GrowthOutcome> {
    let key = &request.idempotency;
    match crate::writer::earlier(tx, app_seq, t::GROWTH_SCOPE, key)? {
        Some(Earlier::Replay(answer)) => return Ok(GrowthOutcome::Replayed(answer)),
        Some(Earlier::KeyReused) => return Ok(GrowthOutcome::KeyReused),
        None => {}
    }
    let Some(user) = user_index(tx, app_seq, request.user_id.as_str())? else {
        return Ok(GrowthOutcome::UnknownUser);
    };
    let now = request.now_us;
    // Judged before the growth too, so a grace that ran out is applied first.
    judge(tx, app_seq, user, zone, now)?;
    tx.execute(
        t::INSERT_GROWTH,
        params![
            app_seq,
            user,
            now,
            request.amount,
            request.reason,
            request.cause.kind,
            request.cause.id
        ],
    )
    .map_err(to_store_error)?;
    let loaded = judge(tx, app_seq, user, zone, now)?;
    let answer = t::membership(&loaded, now, zone);
    remember(tx, app_seq, t::GROWTH_SCOPE, key, &answer, now)?;
    Ok(GrowthOutcome::Done(answer))
}

// ---- rewards ----

pub(crate) fn put_reward(
    tx: &Connection,
    app_seq: i64,
    key: &str,
    spec: &RewardSpec,
    now: i64,
) -> StoreResult<()> {
    let text = serde_json::to_string(spec).map_err(StoreError::internal)?;
    tx.execute(
        m::PUT_REWARD,
        params![
            app_seq,
            key,
            text,
            spec.kind.as_str(),
            spec.points_price,
            spec.stock,
            now
        ],
    )
    .map_err(to_store_error)?;
    Ok(())
}

fn reward(tx: &Connection, app_seq: i64, key: &str) -> StoreResult<Option<m::Reward>> {
    let row: Option<(String, Option<i64>, i64)> = tx
        .query_row(m::REWARD, params![app_seq, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(to_store_error)?;
    let Some((spec, stock, redeemed)) = row else {
        return Ok(None);
    };
    let free: i64 = tx
        .query_row(m::FREE_CODES, params![app_seq, key], |r| r.get(0))
        .map_err(to_store_error)?;
    m::reward_of(key.to_string(), &spec, stock, redeemed, free).map(Some)
}

/// Adds codes to a coupon reward's pool: (added, already there); `None` when
/// there is no such coupon reward.
pub(crate) fn add_codes(
    tx: &Connection,
    app_seq: i64,
    key: &str,
    codes: &[String],
    now: i64,
) -> StoreResult<Option<(usize, usize)>> {
    match reward(tx, app_seq, key)? {
        Some(r) if r.spec.kind == RewardKind::CouponCode => {}
        _ => return Ok(None),
    }
    let mut added = 0;
    let mut insert = tx.prepare_cached(m::ADD_CODE).map_err(to_store_error)?;
    for code in codes {
        added += insert
            .execute(params![app_seq, key, code, now])
            .map_err(to_store_error)?;
    }
    Ok(Some((added, codes.len() - added)))
}

pub(crate) fn redeem(
    tx: &Connection,
    app_seq: i64,
    zone: &AppTimeZone,
    request: &RedeemRequest,
) -> StoreResult<RedeemOutcome> {
    let key = &request.idempotency;
    match crate::writer::earlier(tx, app_seq, m::REDEMPTION_SCOPE, key)? {
        Some(Earlier::Replay(answer)) => return Ok(RedeemOutcome::Replayed(answer)),
        Some(Earlier::KeyReused) => return Ok(RedeemOutcome::KeyReused),
        None => {}
    }
    let Some(user) = user_index(tx, app_seq, request.user_id.as_str())? else {
        return Ok(RedeemOutcome::UnknownUser);
    };
    let Some(reward) = reward(tx, app_seq, &request.reward_key)? else {
        return Ok(RedeemOutcome::UnknownReward);
    };
    let now = request.now_us;
    let spec = &reward.spec;
    let tier_allows = match &spec.min_tier {
        None => true,
        Some(required) => {
            let loaded = judge(tx, app_seq, user, zone, now)?;
            match (&loaded.latest, &loaded.member) {
                (Some((_, config)), Some((tier, ..))) => {
                    huiliu_domain::tiers::allows(config, tier, required)
                }
                _ => false,
            }
        }
    };
    let redeemed: u32 = tx
        .query_row(
            m::REDEEMED_BY_USER,
            params![app_seq, user, request.reward_key],
            |r| r.get(0),
        )
        .map_err(to_store_error)?;
    if let Err(refusal) = mall::check(
        spec,
        huiliu_domain::time::from_micros(now),
        tier_allows,
        redeemed,
    ) {
        return Ok(RedeemOutcome::Refused(refusal));
    }
    // One writer: what is free now is still free at the commit.
    if reward.available == Some(0) {
        return Ok(RedeemOutcome::SoldOut);
    }
    let hold_op = Op::Hold {
        amount: spec.points_price,
        times_out_us: now + m::REDEMPTION_HOLD_US,
    };
    let held = match plan(load(tx, app_seq, user, &hold_op)?, &hold_op, now) {
        Ok(plan) => plan,
        Err(PointsError::Insufficient { available }) => {
            return Ok(RedeemOutcome::Insufficient { available })
        }
        Err(e) => return Err(StoreError::internal(e)),
    };
    let id: i64 = tx
        .query_row(
            m::INSERT_REDEMPTION,
            params![
                app_seq,
                user,
                request.reward_key,
                spec.kind.as_str(),
                spec.points_price,
                spec.cash_price_fen,
                now
            ],
            |r| r.get(0),
        )
        .map_err(to_store_error)?;
    let cause = m::redemption_cause(id);
    let reason = format!("redeem {}", request.reward_key);
    let hold_id = write(tx, app_seq, user, &hold_op, &held, &reason, &cause, now)?;
    let code: Option<String> = if spec.kind == RewardKind::CouponCode {
        let code: String = tx
            .query_row(
                "SELECT code FROM coupon_codes WHERE app_seq = $1 AND reward_key = $2
                 AND redemption_id IS NULL LIMIT 1",
                params![app_seq, request.reward_key],
                |r| r.get(0),
            )
            .map_err(to_store_error)?;
        tx.execute(
            "UPDATE coupon_codes SET redemption_id = $1 WHERE app_seq = $2 AND reward_key = $3 AND code = $4",
            params![id, app_seq, request.reward_key, code],
        )
        .map_err(to_store_error)?;
        tx.execute(
            "UPDATE rewards SET redeemed = redeemed + 1 WHERE app_seq = $1 AND reward_key = $2",
            params![app_seq, request.reward_key],
        )
        .map_err(to_store_error)?;
        Some(code)
    } else {
        let taken = tx
            .execute(m::TAKE_UNIT, params![app_seq, request.reward_key])
            .map_err(to_store_error)?;
        if taken != 1 {
            return Err(StoreError::internal("stock checked above ran out"));
        }
        None
    };
    let capture_op = Op::Capture {
        hold: hold_id as u64,
    };
    let captured = plan(load(tx, app_seq, user, &capture_op)?, &capture_op, now)
        .map_err(StoreError::internal)?;
    let capture_id = write(
        tx,
        app_seq,
        user,
        &capture_op,
        &captured,
        &reason,
        &cause,
        now,
    )?;
    let status = m::status_after_issue(spec.kind);
    tx.execute(
        m::COMPLETE_REDEMPTION,
        params![status, hold_id, capture_id, code, now, id],
    )
    .map_err(to_store_error)?;
    let redemption = Redemption {
        redemption_id: id,
        user_id: request.user_id.as_str().to_string(),
        reward_key: request.reward_key.clone(),
        kind: spec.kind.as_str().to_string(),
        points: spec.points_price,
        cash_price_fen: spec.cash_price_fen,
        status: status.to_string(),
        code,
        hold_id,
        capture_id,
        refund_id: None,
        balance: Some(captured.summary.balance),
        created_us: now,
        updated_us: now,
    };
    remember(tx, app_seq, m::REDEMPTION_SCOPE, key, &redemption, now)?;
    Ok(RedeemOutcome::Done(redemption))
}

fn redemption(tx: &Connection, app_seq: i64, id: i64) -> StoreResult<Option<(Redemption, i64)>> {
    tx.query_row(m::REDEMPTION, params![app_seq, id], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
        ))
    })
    .optional()
    .map_err(to_store_error)
    .map(|row| row.map(|c| m::redemption_of(c, None)))
}

pub(crate) fn get_redemption(
    tx: &Connection,
    app_seq: i64,
    id: i64,
) -> StoreResult<Option<Redemption>> {
    Ok(redemption(tx, app_seq, id)?.map(|(r, _)| r))
}

pub(crate) fn act(
    tx: &Connection,
    app_seq: i64,
    id: i64,
    action: RedemptionAction,
    now: i64,
) -> StoreResult<ActionOutcome> {
    let Some((mut found, user)) = redemption(tx, app_seq, id)? else {
        return Ok(ActionOutcome::Unknown);
    };
    match (action, found.status.as_str()) {
        // A retry answers as the first time.
        (RedemptionAction::Cancel, "cancelled") | (RedemptionAction::Fulfil, "fulfilled") => {
            return Ok(ActionOutcome::Done(found))
        }
        (RedemptionAction::Fulfil, "awaiting_fulfilment") => {
            tx.execute(
                m::SET_REDEMPTION_STATUS,
                params!["fulfilled", None::<i64>, now, id],
            )
            .map_err(to_store_error)?;
            found.status = "fulfilled".into();
            found.updated_us = now;
            return Ok(ActionOutcome::Done(found));
        }
        (RedemptionAction::Cancel, "completed" | "awaiting_fulfilment") => {}
        (_, status) => {
            return Ok(ActionOutcome::Conflict {
                status: status.to_string(),
            })
        }
    }
    let allocation: Option<String> = tx
        .query_row(p::ENTRY, params![app_seq, found.capture_id], |r| r.get(2))
        .map_err(to_store_error)?;
    let taken = allocation
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .ok_or_else(|| StoreError::internal("a capture without its allocation"))?;
    let op = Op::ReverseSpend {
        entry: found.capture_id as u64,
        taken,
    };
    let refunded = plan(load(tx, app_seq, user, &op)?, &op, now).map_err(StoreError::internal)?;
    let reason = format!("redemption {} cancelled", m::redemption_id(id));
    let refund_id = write(
        tx,
        app_seq,
        user,
        &op,
        &refunded,
        &reason,
        &m::redemption_cause(id),
        now,
    )?;
    if found.kind != RewardKind::CouponCode.as_str() {
        tx.execute(m::RETURN_UNIT, params![app_seq, found.reward_key])
            .map_err(to_store_error)?;
    }
    tx.execute(
        m::SET_REDEMPTION_STATUS,
        params!["cancelled", refund_id, now, id],
    )
    .map_err(to_store_error)?;
    found.status = "cancelled".into();
    found.refund_id = Some(refund_id);
    found.updated_us = now;
    found.balance = Some(refunded.summary.balance);
    Ok(ActionOutcome::Done(found))
}

pub(crate) fn restock(
    tx: &Connection,
    app_seq: i64,
    key: &str,
    delta: i64,
) -> StoreResult<m::Restocked> {
    let left: Option<i64> = tx
        .query_row(m::RESTOCK, params![delta, app_seq, key], |r| r.get(0))
        .optional()
        .map_err(to_store_error)?;
    Ok(match (left, reward(tx, app_seq, key)?) {
        (Some(left), _) => m::Restocked::Done(left),
        (None, None) => m::Restocked::UnknownReward,
        (None, Some(r)) if r.spec.kind == RewardKind::CouponCode || r.available.is_none() => {
            m::Restocked::NotCounted
        }
        (None, Some(r)) => m::Restocked::Insufficient {
            available: r.available.unwrap_or(0),
        },
    })
}

pub(crate) fn rewards(tx: &Connection, app_seq: i64) -> StoreResult<Vec<m::Reward>> {
    let rows: Vec<(String, String, Option<i64>, i64, i64)> = tx
        .prepare_cached(m::REWARDS)
        .and_then(|mut s| {
            s.query_map(params![app_seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    rows.into_iter()
        .map(|(key, spec, stock, redeemed, free)| m::reward_of(key, &spec, stock, redeemed, free))
        .collect()
}

pub(crate) fn one_reward(
    tx: &Connection,
    app_seq: i64,
    key: &str,
) -> StoreResult<Option<m::Reward>> {
    reward(tx, app_seq, key)
}
