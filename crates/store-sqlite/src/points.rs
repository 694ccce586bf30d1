//! The points ledger on SQLite: each transaction one writer job (`BEGIN
//! IMMEDIATE`), so a user's balance check and debit cannot interleave.

use crate::writer::to_store_error;
use huiliu_domain::points::{Lot, PointsError};
use huiliu_store::points::{self as p, PointsOutcome, PointsReceipt, PointsRequest, PointsSummary};
use huiliu_store::{sql, Earlier, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};

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
    let Some(user) = tx
        .query_row(
            p::USER_INDEX,
            params![app_seq, request.user_id.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(to_store_error)?
    else {
        return Ok(PointsOutcome::UnknownUser);
    };
    let now = request.now_us;
    tx.execute(p::ENSURE_ACCOUNT, params![app_seq, user, now])
        .map_err(to_store_error)?;
    let debt: i64 = tx
        .query_row(p::ACCOUNT_DEBT, params![app_seq, user], |r| r.get(0))
        .map_err(to_store_error)?;
    let lots = {
        let mut statement = tx.prepare_cached(p::LIVE_LOTS).map_err(to_store_error)?;
        let rows = statement
            .query_map(params![app_seq, user], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(to_store_error)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(to_store_error)?
    };
    let mut points = p::points_of(lots, debt);
    let seq = if request.amount > 0 {
        let seq: i64 = tx
            .query_row(
                p::INSERT_ENTRY,
                params![
                    app_seq,
                    user,
                    "earn",
                    request.amount,
                    request.reason,
                    None::<String>,
                    now
                ],
                |r| r.get(0),
            )
            .map_err(to_store_error)?;
        points
            .earn(Lot {
                id: seq as u64,
                amount: request.amount,
                remaining: request.amount,
                expires_us: request.expires_us,
                vests_us: None,
                voided: false,
            })
            .map_err(StoreError::internal)?;
        let remaining = points.lots[&(seq as u64)].remaining;
        tx.execute(
            p::INSERT_LOT,
            params![
                app_seq,
                user,
                seq,
                request.amount,
                remaining,
                request.expires_us
            ],
        )
        .map_err(to_store_error)?;
        seq
    } else {
        let taken = match points.spend(-request.amount, now) {
            Ok(taken) => taken,
            Err(PointsError::Insufficient { available }) => {
                return Ok(PointsOutcome::Insufficient { available })
            }
            Err(e) => return Err(StoreError::internal(e)),
        };
        let allocation = serde_json::to_string(&taken).map_err(StoreError::internal)?;
        let seq: i64 = tx
            .query_row(
                p::INSERT_ENTRY,
                params![
                    app_seq,
                    user,
                    "spend",
                    request.amount,
                    request.reason,
                    allocation,
                    now
                ],
                |r| r.get(0),
            )
            .map_err(to_store_error)?;
        for lot in taken.keys() {
            tx.execute(
                p::SET_LOT_REMAINING,
                params![points.lots[lot].remaining, app_seq, user, *lot as i64],
            )
            .map_err(to_store_error)?;
        }
        seq
    };
    if points.debt != debt {
        tx.execute(p::SET_DEBT, params![points.debt, now, app_seq, user])
            .map_err(to_store_error)?;
    }
    let receipt = PointsReceipt {
        transaction_id: p::transaction_id(seq),
        balance: points.balance(now),
    };
    let response = serde_json::to_string(&receipt).map_err(StoreError::internal)?;
    tx.execute(
        sql::PUT_IDEMPOTENCY,
        params![
            app_seq,
            p::POINTS_SCOPE,
            key.key,
            key.request_hash,
            response,
            now
        ],
    )
    .map_err(to_store_error)?;
    Ok(PointsOutcome::Done(receipt))
}

/// A user's points now; `None` for a user huiliu has never seen.
pub(crate) async fn summary(
    reader: &sqlx::SqlitePool,
    app_seq: i64,
    user_id: &str,
    now_us: i64,
) -> StoreResult<Option<PointsSummary>> {
    let user: Option<(i64,)> = sqlx::query_as(p::USER_INDEX)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(reader)
        .await?;
    let Some((user,)) = user else { return Ok(None) };
    let debt: Option<(i64,)> = sqlx::query_as(p::ACCOUNT_DEBT)
        .bind(app_seq)
        .bind(user)
        .fetch_optional(reader)
        .await?;
    let lots: Vec<p::LotColumns> = sqlx::query_as(p::LIVE_LOTS)
        .bind(app_seq)
        .bind(user)
        .fetch_all(reader)
        .await?;
    Ok(Some(p::summary_of(lots, debt.map_or(0, |d| d.0), now_us)))
}
