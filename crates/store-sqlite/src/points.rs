//! The points ledger on SQLite: each write one writer job (`BEGIN IMMEDIATE`),
//! so a user's balance check and debit cannot interleave with another write.

use crate::writer::to_store_error;
use huiliu_domain::points::ledger::{plan, Op, Plan};
use huiliu_domain::points::{Points, PointsError};
use huiliu_store::points::{self as p, Cause, PointsOutcome, PointsRequest, SettleRequest, Target};
use huiliu_store::{sql, Earlier, IdempotencyKey, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

/// User `user_id`'s index in the app, if huiliu knows the user.
pub(crate) fn user_index(tx: &Connection, app_seq: i64, user_id: &str) -> StoreResult<Option<i64>> {
    tx.query_row(p::USER_INDEX, params![app_seq, user_id], |r| r.get(0))
        .optional()
        .map_err(to_store_error)
}

fn lot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<p::LotColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// The user's points as the operation needs them.
pub(crate) fn load(tx: &Connection, app_seq: i64, user: i64, op: &Op) -> StoreResult<Points> {
    let (debt, on_hold): (i64, i64) = tx
        .prepare_cached(p::ACCOUNT)
        .and_then(|mut s| {
            s.query_row(params![app_seq, user], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(to_store_error)?
        .unwrap_or((0, 0));
    let lots = tx
        .prepare_cached(&p::live_lots_sql())
        .and_then(|mut s| {
            s.query_map(params![app_seq, user], lot_row)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    let holds = if on_hold > 0 {
        tx.prepare_cached(p::HOLDS)
            .and_then(|mut s| {
                s.query_map(params![app_seq, user], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(to_store_error)?
    } else {
        Vec::new()
    };
    let mut points = p::points_of(lots, holds, debt)?;
    for id in p::lots_to_load(&points, op) {
        let lot = tx
            .prepare_cached(&p::one_lot_sql())
            .and_then(|mut s| s.query_row(params![app_seq, user, id], lot_row).optional())
            .map_err(to_store_error)?;
        if let Some(lot) = lot {
            let lot = p::lot_of(lot);
            points.lots.insert(lot.id, lot);
        }
    }
    Ok(points)
}

/// Writes `plan` for `user`; the seq of its last entry (0 if it has none).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    op: &Op,
    plan: &Plan,
    reason: &str,
    cause: &Cause,
    now: i64,
) -> StoreResult<i64> {
    let mut seq = 0;
    {
        let mut insert = tx.prepare_cached(p::INSERT_ENTRY).map_err(to_store_error)?;
        for row in p::entry_rows(plan, op, reason, cause) {
            seq = insert
                .query_row(
                    params![
                        app_seq,
                        user,
                        row.kind,
                        row.amount,
                        row.reason,
                        row.allocation,
                        now,
                        row.cause.kind,
                        row.cause.id,
                        row.refers_to,
                        row.shortfall
                    ],
                    |r| r.get(0),
                )
                .map_err(to_store_error)?;
        }
    }
    for lot in &plan.changed_lots {
        tx.prepare_cached(p::UPDATE_LOT)
            .and_then(|mut s| {
                s.execute(params![
                    lot.remaining,
                    lot.voided,
                    lot.expired,
                    app_seq,
                    user,
                    lot.id as i64
                ])
            })
            .map_err(to_store_error)?;
    }
    let (new_lot, new_hold) = p::renamed(plan, seq);
    if let Some(lot) = new_lot {
        tx.prepare_cached(p::INSERT_LOT)
            .and_then(|mut s| {
                s.execute(params![
                    app_seq,
                    user,
                    lot.id as i64,
                    lot.amount,
                    lot.remaining,
                    lot.expires_us,
                    lot.vests_us
                ])
            })
            .map_err(to_store_error)?;
    }
    if let Some(hold) = new_hold {
        let allocation = serde_json::to_string(&hold.taken).map_err(StoreError::internal)?;
        tx.prepare_cached(p::INSERT_HOLD)
            .and_then(|mut s| {
                s.execute(params![
                    app_seq,
                    user,
                    hold.id as i64,
                    allocation,
                    hold.times_out_us
                ])
            })
            .map_err(to_store_error)?;
    }
    for hold in &plan.settled_holds {
        tx.prepare_cached(p::DELETE_HOLD)
            .and_then(|mut s| s.execute(params![app_seq, user, *hold as i64]))
            .map_err(to_store_error)?;
    }
    let s = plan.summary;
    tx.prepare_cached(p::SAVE_ACCOUNT)
        .and_then(|mut st| {
            st.execute(params![
                app_seq,
                user,
                s.debt,
                s.balance,
                s.pending,
                s.on_hold,
                s.valid_until_us,
                now
            ])
        })
        .map_err(to_store_error)?;
    Ok(seq)
}

/// Keeps `answer` under the idempotency key, for a retry to find.
pub(crate) fn remember<T: huiliu_store::Serialize>(
    tx: &Connection,
    app_seq: i64,
    scope: &str,
    key: &IdempotencyKey,
    answer: &T,
    now: i64,
) -> StoreResult<()> {
    let response = serde_json::to_string(answer).map_err(StoreError::internal)?;
    tx.prepare_cached(sql::PUT_IDEMPOTENCY)
        .and_then(|mut s| {
            s.execute(params![
                app_seq,
                scope,
                key.key,
                key.request_hash,
                response,
                now
            ])
        })
        .map_err(to_store_error)?;
    Ok(())
}

fn refused(error: PointsError) -> StoreResult<PointsOutcome> {
    match error {
        PointsError::Insufficient { available } => Ok(PointsOutcome::Insufficient { available }),
        other => Err(StoreError::internal(other)),
    }
}

pub(crate) fn transact(
    tx: &Connection,
    app_seq: i64,
    request: &PointsRequest,
) -> StoreResult<PointsOutcome> {
    let key = &request.idempotency;
    match crate::writer::earlier(tx, app_seq, p::POINTS_SCOPE, key)? {
        Some(Earlier::Replay(receipt)) => return Ok(PointsOutcome::Replayed(receipt)),
        Some(Earlier::KeyReused) => return Ok(PointsOutcome::KeyReused),
        None => {}
    }
    let Some(user) = user_index(tx, app_seq, request.user_id.as_str())? else {
        return Ok(PointsOutcome::UnknownUser);
    };
    let now = request.now_us;
    let op = p::op_of(&request.action);
    let points = load(tx, app_seq, user, &op)?;
    let plan = match plan(points, &op, now) {
        Ok(plan) => plan,
        Err(e) => return refused(e),
    };
    let seq = write(
        tx,
        app_seq,
        user,
        &op,
        &plan,
        &request.reason,
        &request.cause,
        now,
    )?;
    let receipt = p::receipt_of(&plan, seq);
    remember(tx, app_seq, p::POINTS_SCOPE, key, &receipt, now)?;
    Ok(PointsOutcome::Done(receipt))
}

pub(crate) fn settle(
    tx: &Connection,
    app_seq: i64,
    request: &SettleRequest,
) -> StoreResult<PointsOutcome> {
    let key = request.idempotency();
    if let Some(Earlier::Replay(receipt)) =
        crate::writer::earlier(tx, app_seq, p::SETTLE_SCOPE, &key)?
    {
        return Ok(PointsOutcome::Replayed(receipt));
    }
    let Some(target) = tx
        .query_row(p::ENTRY, params![app_seq, request.entry], |r| {
            Ok(Target {
                user_index: r.get(0)?,
                kind: r.get(1)?,
                allocation: r.get(2)?,
                refers_to: r.get(3)?,
            })
        })
        .optional()
        .map_err(to_store_error)?
    else {
        return Ok(PointsOutcome::UnknownEntry);
    };
    let policy = settings(tx, app_seq)?.shortfall;
    let op = match p::settle_op(request.entry, &target, request.action, policy) {
        Ok(op) => op,
        Err(outcome) => return Ok(outcome),
    };
    let settled_by: Option<(i64, String)> = tx
        .query_row(p::SETTLED_BY, params![app_seq, request.entry], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(to_store_error)?;
    if let Some(by) = settled_by {
        return Ok(p::already_settled(request.action, by));
    }
    let now = request.now_us;
    let user = target.user_index;
    let points = load(tx, app_seq, user, &op)?;
    let plan = match plan(points, &op, now) {
        Ok(plan) => plan,
        // The hold timed out: the sweep (or the next write) releases it.
        Err(PointsError::Unknown) => {
            return Ok(PointsOutcome::HoldSettled {
                how: "timed_out".into(),
            })
        }
        Err(e) => return refused(e),
    };
    let seq = write(
        tx,
        app_seq,
        user,
        &op,
        &plan,
        &request.reason,
        &request.cause,
        now,
    )?;
    let receipt = p::receipt_of(&plan, seq);
    remember(tx, app_seq, p::SETTLE_SCOPE, &key, &receipt, now)?;
    Ok(PointsOutcome::Done(receipt))
}

pub(crate) fn settings(tx: &Connection, app_seq: i64) -> StoreResult<p::PointsPolicy> {
    let stored = tx
        .query_row(p::GET_SETTINGS, params![app_seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(to_store_error)?;
    p::policy_of(stored)
}

/// Writes what time decided for accounts due at `now`: expiries, timed-out
/// holds, refreshed figures. How many accounts it went through.
pub(crate) fn sweep(tx: &Connection, now: i64, limit: i64) -> StoreResult<usize> {
    let due: Vec<(i64, i64)> = tx
        .prepare_cached(p::DUE_ACCOUNTS)
        .and_then(|mut s| {
            s.query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_store_error)?;
    let cause = Cause::new("expiry", None);
    for (app_seq, user) in &due {
        let points = load(tx, *app_seq, *user, &Op::Sweep)?;
        let plan = plan(points, &Op::Sweep, now).map_err(StoreError::internal)?;
        write(tx, *app_seq, *user, &Op::Sweep, &plan, "", &cause, now)?;
    }
    Ok(due.len())
}

/// A user's points now; `None` for a user huiliu has never seen.
pub(crate) async fn summary(
    reader: &sqlx::SqlitePool,
    app_seq: i64,
    user_id: &str,
    now_us: i64,
) -> StoreResult<Option<p::PointsSummary>> {
    let user: Option<(i64,)> = sqlx::query_as(p::USER_INDEX)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(reader)
        .await?;
    let Some((user,)) = user else { return Ok(None) };
    let (debt, on_hold): (i64, i64) = sqlx::query_as(p::ACCOUNT)
        .bind(app_seq)
        .bind(user)
        .fetch_optional(reader)
        .await?
        .unwrap_or((0, 0));
    let lots: Vec<p::LotColumns> = sqlx::query_as(&p::live_lots_sql())
        .bind(app_seq)
        .bind(user)
        .fetch_all(reader)
        .await?;
    let holds: Vec<p::HoldColumns> = if on_hold > 0 {
        sqlx::query_as(p::HOLDS)
            .bind(app_seq)
            .bind(user)
            .fetch_all(reader)
            .await?
    } else {
        Vec::new()
    };
    let mut points = p::points_of(lots, holds, debt)?;
    // Holds that timed out count as released: their lots may be empty now.
    for id in p::lots_to_load(&points, &Op::Sweep) {
        let lot: Option<p::LotColumns> = sqlx::query_as(&p::one_lot_sql())
            .bind(app_seq)
            .bind(user)
            .bind(id)
            .fetch_optional(reader)
            .await?;
        if let Some(lot) = lot.map(p::lot_of) {
            points.lots.insert(lot.id, lot);
        }
    }
    Ok(Some(p::summary_of(points, now_us)))
}
