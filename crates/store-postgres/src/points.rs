//! The points ledger on PostgreSQL: each transaction locks the user's account
//! row first, so concurrent spends of one user run one after another and a
//! balance check and its debit can never interleave.

use huiliu_domain::points::{Lot, PointsError};
use huiliu_store::points::{self as p, PointsOutcome, PointsReceipt, PointsRequest, PointsSummary};
use huiliu_store::{sql, Earlier};
use sqlx::PgPool;

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

pub(crate) async fn transact(
    pool: &PgPool,
    app_seq: i64,
    request: &PointsRequest,
) -> Result<PointsOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = &request.idempotency;
    match crate::earlier(&mut tx, app_seq, p::POINTS_SCOPE, key).await? {
        Some(Earlier::Replay(receipt)) => return Ok(PointsOutcome::Replayed(receipt)),
        Some(Earlier::KeyReused) => return Ok(PointsOutcome::KeyReused),
        None => {}
    }
    let user: Option<(i64,)> = sqlx::query_as(p::USER_INDEX)
        .bind(app_seq)
        .bind(request.user_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((user,)) = user else {
        return Ok(PointsOutcome::UnknownUser);
    };
    let now = request.now_us;
    sqlx::query(p::ENSURE_ACCOUNT)
        .bind(app_seq)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let (debt,): (i64,) = sqlx::query_as(
        "SELECT debt FROM points_accounts WHERE app_seq = $1 AND user_index = $2 FOR UPDATE",
    )
    .bind(app_seq)
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    let lots: Vec<p::LotColumns> = sqlx::query_as(p::LIVE_LOTS)
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    let mut points = p::points_of(lots, debt);
    let insert_entry = |kind: &'static str, allocation: Option<String>| {
        sqlx::query_scalar::<_, i64>(p::INSERT_ENTRY)
            .bind(app_seq)
            .bind(user)
            .bind(kind)
            .bind(request.amount)
            .bind(&request.reason)
            .bind(allocation)
            .bind(now)
    };
    let seq = if request.amount > 0 {
        let seq = insert_entry("earn", None).fetch_one(&mut *tx).await?;
        points
            .earn(Lot {
                id: seq as u64,
                amount: request.amount,
                remaining: request.amount,
                expires_us: request.expires_us,
                vests_us: None,
                voided: false,
            })
            .map_err(decode)?;
        sqlx::query(p::INSERT_LOT)
            .bind(app_seq)
            .bind(user)
            .bind(seq)
            .bind(request.amount)
            .bind(points.lots[&(seq as u64)].remaining)
            .bind(request.expires_us)
            .execute(&mut *tx)
            .await?;
        seq
    } else {
        let taken = match points.spend(-request.amount, now) {
            Ok(taken) => taken,
            Err(PointsError::Insufficient { available }) => {
                return Ok(PointsOutcome::Insufficient { available })
            }
            Err(e) => return Err(decode(e)),
        };
        let allocation = serde_json::to_string(&taken).map_err(decode)?;
        let seq = insert_entry("spend", Some(allocation))
            .fetch_one(&mut *tx)
            .await?;
        for lot in taken.keys() {
            sqlx::query(p::SET_LOT_REMAINING)
                .bind(points.lots[lot].remaining)
                .bind(app_seq)
                .bind(user)
                .bind(*lot as i64)
                .execute(&mut *tx)
                .await?;
        }
        seq
    };
    if points.debt != debt {
        sqlx::query(p::SET_DEBT)
            .bind(points.debt)
            .bind(now)
            .bind(app_seq)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    }
    let receipt = PointsReceipt {
        transaction_id: p::transaction_id(seq),
        balance: points.balance(now),
    };
    sqlx::query(sql::PUT_IDEMPOTENCY)
        .bind(app_seq)
        .bind(p::POINTS_SCOPE)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(serde_json::to_string(&receipt).map_err(decode)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(PointsOutcome::Done(receipt))
}

pub(crate) async fn summary(
    pool: &PgPool,
    app_seq: i64,
    user_id: &str,
    now_us: i64,
) -> Result<Option<PointsSummary>, sqlx::Error> {
    let user: Option<(i64,)> = sqlx::query_as(p::USER_INDEX)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    let Some((user,)) = user else { return Ok(None) };
    let debt: Option<(i64,)> = sqlx::query_as(p::ACCOUNT_DEBT)
        .bind(app_seq)
        .bind(user)
        .fetch_optional(pool)
        .await?;
    let lots: Vec<p::LotColumns> = sqlx::query_as(p::LIVE_LOTS)
        .bind(app_seq)
        .bind(user)
        .fetch_all(pool)
        .await?;
    Ok(Some(p::summary_of(lots, debt.map_or(0, |d| d.0), now_us)))
}
