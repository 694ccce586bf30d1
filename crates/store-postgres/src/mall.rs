//! The redemption mall and member tiers on PostgreSQL. A redemption locks the
//! user's points account, holds the points, then takes a unit by a conditional
//! update of the reward row (or a pool code with `SKIP LOCKED`); when nothing
//! is left the transaction is rolled back, hold included. Concurrent
//! redeemers of one reward queue on its row, so the last unit goes once.

use crate::points::{load, lock_by_index, remember, user_index, write};
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
use huiliu_store::Earlier;
use sqlx::{PgConnection, PgPool};

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn store_decode(e: huiliu_store::StoreError) -> sqlx::Error {
    decode(std::io::Error::other(e.to_string()))
}

// ---- tiers ----

async fn load_member(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
) -> Result<Loaded, sqlx::Error> {
    let latest: Option<(i64, String)> = sqlx::query_as(t::LATEST_CONFIG)
        .bind(app_seq)
        .fetch_optional(&mut *tx)
        .await?;
    let latest = latest
        .map(|(v, c)| t::config_of(&c).map(|c| (v, c)))
        .transpose()
        .map_err(store_decode)?;
    // The member row is locked: two judgements of one member run one after the other.
    let member: Option<t::MemberColumns> = sqlx::query_as(&format!("{} FOR UPDATE", t::MEMBER))
        .bind(app_seq)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    let judged_under = match (&member, &latest) {
        (Some((_, _, _, v)), Some((latest, _))) if v != latest => {
            let text: Option<String> = sqlx::query_scalar(t::CONFIG_VERSION)
                .bind(app_seq)
                .bind(v)
                .fetch_optional(&mut *tx)
                .await?;
            text.map(|c| t::config_of(&c))
                .transpose()
                .map_err(store_decode)?
        }
        _ => None,
    };
    let growth: Vec<(i64, i64)> = sqlx::query_as(t::GROWTH)
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    Ok(Loaded {
        latest,
        member,
        judged_under,
        growth,
    })
}

pub(crate) async fn judge(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    zone: &AppTimeZone,
    now: i64,
) -> Result<Loaded, sqlx::Error> {
    let mut loaded = load_member(tx, app_seq, user).await?;
    if let Some((evaluation, version)) = t::standing(&loaded, now, zone) {
        if t::changed(&loaded, &evaluation, version) {
            let s = &evaluation.state;
            sqlx::query(t::PUT_MEMBER)
                .bind(app_seq)
                .bind(user)
                .bind(&s.tier)
                .bind(s.since_us)
                .bind(s.grace_until_us)
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            loaded.member = Some((s.tier.clone(), s.since_us, s.grace_until_us, version));
            loaded.judged_under = None;
        }
    }
    Ok(loaded)
}

/// Judges the members whose grace ended by `now`, each in its own transaction
/// (the member row is locked while judged); how many.
pub(crate) async fn sweep_grace(pool: &PgPool, now: i64, limit: i64) -> Result<usize, sqlx::Error> {
    let due: Vec<(i64, i64, String)> = sqlx::query_as(t::GRACE_ENDED)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    for (app_seq, user, zone) in &due {
        let zone =
            AppTimeZone::parse(zone).map_err(|e| decode(std::io::Error::other(e.message)))?;
        let mut tx = pool.begin().await?;
        judge(&mut tx, *app_seq, *user, &zone, now).await?;
        tx.commit().await?;
    }
    Ok(due.len())
}

pub(crate) async fn put_tier_config(
    pool: &PgPool,
    app_seq: i64,
    config: &TierConfig,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One version at a time per app.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tier_configs'), $1::int)")
        .bind(app_seq as i32)
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM tier_configs WHERE app_seq = $1",
    )
    .bind(app_seq)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(t::INSERT_CONFIG)
        .bind(app_seq)
        .bind(version)
        .bind(serde_json::to_string(config).map_err(decode)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(version)
}

pub(crate) async fn membership(
    pool: &PgPool,
    app_seq: i64,
    user_id: &str,
    zone: &AppTimeZone,
    now: i64,
) -> Result<Option<Membership>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(user) = user_index(&mut tx, app_seq, user_id).await? else {
        return Ok(None);
    };
    let loaded = judge(&mut tx, app_seq, user, zone, now).await?;
    tx.commit().await?;
    Ok(Some(t::membership(&loaded, now, zone)))
}

pub(crate) async fn add_growth(
    pool: &PgPool,
    app_seq: i64,
    zone: &AppTimeZone,
    request: &GrowthRequest,
) -> Result<GrowthOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = &request.idempotency;
    match crate::earlier(&mut tx, app_seq, t::GROWTH_SCOPE, key).await? {
        Some(Earlier::Replay(answer)) => return Ok(GrowthOutcome::Replayed(answer)),
        Some(Earlier::KeyReused) => return Ok(GrowthOutcome::KeyReused),
        None => {}
    }
    let Some(user) = user_index(&mut tx, app_seq, request.user_id.as_str()).await? else {
        return Ok(GrowthOutcome::UnknownUser);
    };
    let now = request.now_us;
    judge(&mut tx, app_seq, user, zone, now).await?;
    sqlx::query(t::INSERT_GROWTH)
        .bind(app_seq)
        .bind(user)
        .bind(now)
        .bind(request.amount)
        .bind(&request.reason)
        .bind(&request.cause.kind)
        .bind(&request.cause.id)
        .execute(&mut *tx)
        .await?;
    let loaded = judge(&mut tx, app_seq, user, zone, now).await?;
    let answer = t::membership(&loaded, now, zone);
    remember(&mut tx, app_seq, t::GROWTH_SCOPE, key, &answer, now).await?;
    tx.commit().await?;
    Ok(GrowthOutcome::Done(answer))
}

// ---- rewards ----

pub(crate) async fn put_reward(
    pool: &PgPool,
    app_seq: i64,
    key: &str,
    spec: &RewardSpec,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(m::PUT_REWARD)
        .bind(app_seq)
        .bind(key)
        .bind(serde_json::to_string(spec).map_err(decode)?)
        .bind(spec.kind.as_str())
        .bind(spec.points_price)
        .bind(spec.stock)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn reward(
    tx: &mut PgConnection,
    app_seq: i64,
    key: &str,
) -> Result<Option<m::Reward>, sqlx::Error> {
    let row: Option<(String, Option<i64>, i64)> = sqlx::query_as(m::REWARD)
        .bind(app_seq)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((spec, stock, redeemed)) = row else {
        return Ok(None);
    };
    let free: i64 = sqlx::query_scalar(m::FREE_CODES)
        .bind(app_seq)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
    m::reward_of(key.to_string(), &spec, stock, redeemed, free)
        .map(Some)
        .map_err(store_decode)
}

pub(crate) async fn restock(
    pool: &PgPool,
    app_seq: i64,
    key: &str,
    delta: i64,
) -> Result<m::Restocked, sqlx::Error> {
    let left: Option<Option<i64>> = sqlx::query_scalar(m::RESTOCK)
        .bind(delta)
        .bind(app_seq)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    if let Some(Some(left)) = left {
        return Ok(m::Restocked::Done(left));
    }
    let mut connection = pool.acquire().await?;
    Ok(match reward(&mut connection, app_seq, key).await? {
        None => m::Restocked::UnknownReward,
        Some(r) if r.spec.kind == RewardKind::CouponCode || r.available.is_none() => {
            m::Restocked::NotCounted
        }
        Some(r) => m::Restocked::Insufficient {
            available: r.available.unwrap_or(0),
        },
    })
}

pub(crate) async fn rewards(pool: &PgPool, app_seq: i64) -> Result<Vec<m::Reward>, sqlx::Error> {
    let rows: Vec<(String, String, Option<i64>, i64, i64)> = sqlx::query_as(m::REWARDS)
        .bind(app_seq)
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(key, spec, stock, redeemed, free)| m::reward_of(key, &spec, stock, redeemed, free))
        .collect::<Result<_, _>>()
        .map_err(store_decode)
}

pub(crate) async fn add_codes(
    pool: &PgPool,
    app_seq: i64,
    key: &str,
    codes: &[String],
    now: i64,
) -> Result<Option<(usize, usize)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    match reward(&mut tx, app_seq, key).await? {
        Some(r) if r.spec.kind == RewardKind::CouponCode => {}
        _ => return Ok(None),
    }
    let added = sqlx::query(
        "INSERT INTO coupon_codes (app_seq, reward_key, code, redemption_id, imported_us)
         SELECT $1, $2, code, NULL, $4 FROM UNNEST($3::text[]) AS code
         ON CONFLICT (app_seq, reward_key, code) DO NOTHING",
    )
    .bind(app_seq)
    .bind(key)
    .bind(codes)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected() as usize;
    tx.commit().await?;
    Ok(Some((added, codes.len() - added)))
}

pub(crate) async fn redeem(
    pool: &PgPool,
    app_seq: i64,
    zone: &AppTimeZone,
    request: &RedeemRequest,
) -> Result<RedeemOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = &request.idempotency;
    match crate::earlier(&mut tx, app_seq, m::REDEMPTION_SCOPE, key).await? {
        Some(Earlier::Replay(answer)) => return Ok(RedeemOutcome::Replayed(answer)),
        Some(Earlier::KeyReused) => return Ok(RedeemOutcome::KeyReused),
        None => {}
    }
    let Some(user) = user_index(&mut tx, app_seq, request.user_id.as_str()).await? else {
        return Ok(RedeemOutcome::UnknownUser);
    };
    let Some(reward) = reward(&mut tx, app_seq, &request.reward_key).await? else {
        return Ok(RedeemOutcome::UnknownReward);
    };
    let now = request.now_us;
    // The account lock first: one user's redemptions and ledger writes queue here,
    // so the per-user limit below counts every earlier redemption.
    let locked = lock_by_index(&mut tx, app_seq, user, now).await?;
    let spec = &reward.spec;
    let tier_allows = match &spec.min_tier {
        None => true,
        Some(required) => {
            let loaded = judge(&mut tx, app_seq, user, zone, now).await?;
            match (&loaded.latest, &loaded.member) {
                (Some((_, config)), Some((tier, ..))) => {
                    huiliu_domain::tiers::allows(config, tier, required)
                }
                _ => false,
            }
        }
    };
    let redeemed: i64 = sqlx::query_scalar(m::REDEEMED_BY_USER)
        .bind(app_seq)
        .bind(user)
        .bind(&request.reward_key)
        .fetch_one(&mut *tx)
        .await?;
    if let Err(refusal) = mall::check(
        spec,
        huiliu_domain::time::from_micros(now),
        tier_allows,
        u32::try_from(redeemed).unwrap_or(u32::MAX),
    ) {
        return Ok(RedeemOutcome::Refused(refusal));
    }
    if reward.available == Some(0) {
        return Ok(RedeemOutcome::SoldOut);
    }
    let hold_op = Op::Hold {
        amount: spec.points_price,
        times_out_us: now + m::REDEMPTION_HOLD_US,
    };
    let held = match plan(
        load(&mut tx, app_seq, locked, &hold_op).await?,
        &hold_op,
        now,
    ) {
        Ok(plan) => plan,
        Err(PointsError::Insufficient { available }) => {
            return Ok(RedeemOutcome::Insufficient { available })
        }
        Err(e) => return Err(decode(e)),
    };
    let id: i64 = sqlx::query_scalar(m::INSERT_REDEMPTION)
        .bind(app_seq)
        .bind(user)
        .bind(&request.reward_key)
        .bind(spec.kind.as_str())
        .bind(spec.points_price)
        .bind(spec.cash_price_fen)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let cause = m::redemption_cause(id);
    let reason = format!("redeem {}", request.reward_key);
    let hold_id = write(
        &mut tx, app_seq, user, &hold_op, &held, &reason, &cause, now,
    )
    .await?;
    let code: Option<String> = if spec.kind == RewardKind::CouponCode {
        let code: Option<String> = sqlx::query_scalar(
            "UPDATE coupon_codes SET redemption_id = $1 WHERE app_seq = $2 AND reward_key = $3
             AND code = (SELECT code FROM coupon_codes WHERE app_seq = $2 AND reward_key = $3
                         AND redemption_id IS NULL LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING code",
        )
        .bind(id)
        .bind(app_seq)
        .bind(&request.reward_key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(code) = code else {
            // Dropping the transaction rolls the hold back too.
            return Ok(RedeemOutcome::SoldOut);
        };
        sqlx::query(
            "UPDATE rewards SET redeemed = redeemed + 1 WHERE app_seq = $1 AND reward_key = $2",
        )
        .bind(app_seq)
        .bind(&request.reward_key)
        .execute(&mut *tx)
        .await?;
        Some(code)
    } else {
        let taken = sqlx::query(m::TAKE_UNIT)
            .bind(app_seq)
            .bind(&request.reward_key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken != 1 {
            return Ok(RedeemOutcome::SoldOut);
        }
        None
    };
    let capture_op = Op::Capture {
        hold: hold_id as u64,
    };
    let locked = lock_by_index(&mut tx, app_seq, user, now).await?;
    let captured = plan(
        load(&mut tx, app_seq, locked, &capture_op).await?,
        &capture_op,
        now,
    )
    .map_err(decode)?;
    let capture_id = write(
        &mut tx,
        app_seq,
        user,
        &capture_op,
        &captured,
        &reason,
        &cause,
        now,
    )
    .await?;
    let status = m::status_after_issue(spec.kind);
    sqlx::query(m::COMPLETE_REDEMPTION)
        .bind(status)
        .bind(hold_id)
        .bind(capture_id)
        .bind(&code)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
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
    remember(&mut tx, app_seq, m::REDEMPTION_SCOPE, key, &redemption, now).await?;
    tx.commit().await?;
    Ok(RedeemOutcome::Done(redemption))
}

async fn redemption(
    tx: &mut PgConnection,
    app_seq: i64,
    id: i64,
    lock: bool,
) -> Result<Option<(Redemption, i64)>, sqlx::Error> {
    let sql = if lock {
        format!("{} FOR UPDATE OF r", m::REDEMPTION)
    } else {
        m::REDEMPTION.to_string()
    };
    let row: Option<m::RedemptionColumns> = sqlx::query_as(&sql)
        .bind(app_seq)
        .bind(id)
        .fetch_optional(tx)
        .await?;
    Ok(row.map(|c| m::redemption_of(c, None)))
}

pub(crate) async fn get_redemption(
    pool: &PgPool,
    app_seq: i64,
    id: i64,
) -> Result<Option<Redemption>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    Ok(redemption(&mut connection, app_seq, id, false)
        .await?
        .map(|(r, _)| r))
}

pub(crate) async fn act(
    pool: &PgPool,
    app_seq: i64,
    id: i64,
    action: RedemptionAction,
    now: i64,
) -> Result<ActionOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some((mut found, user)) = redemption(&mut tx, app_seq, id, true).await? else {
        return Ok(ActionOutcome::Unknown);
    };
    match (action, found.status.as_str()) {
        (RedemptionAction::Cancel, "cancelled") | (RedemptionAction::Fulfil, "fulfilled") => {
            return Ok(ActionOutcome::Done(found))
        }
        (RedemptionAction::Fulfil, "awaiting_fulfilment") => {
            sqlx::query(m::SET_REDEMPTION_STATUS)
                .bind("fulfilled")
                .bind(None::<i64>)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
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
    let entry: (i64, String, Option<String>, Option<i64>) = sqlx::query_as(p::ENTRY)
        .bind(app_seq)
        .bind(found.capture_id)
        .fetch_one(&mut *tx)
        .await?;
    let taken = entry
        .2
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .ok_or_else(|| decode(std::io::Error::other("a capture without its allocation")))?;
    let op = Op::ReverseSpend {
        entry: found.capture_id as u64,
        taken,
    };
    let locked = lock_by_index(&mut tx, app_seq, user, now).await?;
    let refunded = plan(load(&mut tx, app_seq, locked, &op).await?, &op, now).map_err(decode)?;
    let reason = format!("redemption {} cancelled", m::redemption_id(id));
    let refund_id = write(
        &mut tx,
        app_seq,
        user,
        &op,
        &refunded,
        &reason,
        &m::redemption_cause(id),
        now,
    )
    .await?;
    if found.kind != RewardKind::CouponCode.as_str() {
        sqlx::query(m::RETURN_UNIT)
            .bind(app_seq)
            .bind(&found.reward_key)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(m::SET_REDEMPTION_STATUS)
        .bind("cancelled")
        .bind(refund_id)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    found.status = "cancelled".into();
    found.refund_id = Some(refund_id);
    found.updated_us = now;
    found.balance = Some(refunded.summary.balance);
    Ok(ActionOutcome::Done(found))
}
