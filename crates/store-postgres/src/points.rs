//! The points ledger on PostgreSQL: each write locks the user's account row
//! first, so concurrent writes of one user run one after another and a balance
//! check and its debit can never interleave.

use huiliu_domain::points::ledger::{plan, Op, Plan};
use huiliu_domain::points::{Points, PointsError};
use huiliu_store::points::{self as p, Cause, PointsOutcome, PointsRequest, SettleRequest, Target};
use huiliu_store::{sql, Earlier, IdempotencyKey};
use sqlx::{PgConnection, PgPool};

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Creates the account row of user $2 (app $1) if needed and locks it, at $3:
/// the user's writes queue here. No row: huiliu has never seen the user.
const LOCK_ACCOUNT: &str = "INSERT INTO points_accounts (app_seq, user_index, debt, updated_us)
    SELECT $1, user_index, 0, $3 FROM users WHERE app_seq = $1 AND user_id = $2
    ON CONFLICT (app_seq, user_index) DO UPDATE SET updated_us = points_accounts.updated_us
    RETURNING user_index, debt, on_hold";

/// The same for a user known by index ($2).
const LOCK_ACCOUNT_BY_INDEX: &str =
    "INSERT INTO points_accounts (app_seq, user_index, debt, updated_us) VALUES ($1, $2, 0, $3)
    ON CONFLICT (app_seq, user_index) DO UPDATE SET updated_us = points_accounts.updated_us
    RETURNING user_index, debt, on_hold";

/// A locked account: (user_index, debt, on_hold).
pub(crate) type Locked = (i64, i64, i64);

/// Loads the locked user's points as the operation needs them (holds only
/// when the account says some points are on hold).
pub(crate) async fn load(
    tx: &mut PgConnection,
    app_seq: i64,
    (user, debt, on_hold): Locked,
    op: &Op,
) -> Result<Points, sqlx::Error> {
    let lots: Vec<p::LotColumns> = sqlx::query_as(&p::live_lots_sql())
        .bind(app_seq)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    let mut points = p::points_of(lots, Vec::new(), debt).map_err(decode)?;
    complete(tx, app_seq, user, on_hold, &mut points, op).await?;
    Ok(points)
}

/// Adds to a user's live lots what an operation may also touch: the holds
/// (when any points are on hold) and the lots they, or `op`, put points back
/// into, which may be empty now.
pub(crate) async fn complete(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    on_hold: i64,
    points: &mut Points,
    op: &Op,
) -> Result<(), sqlx::Error> {
    if on_hold > 0 {
        let holds: Vec<p::HoldColumns> = sqlx::query_as(p::HOLDS)
            .bind(app_seq)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
        points.holds = p::points_of(Vec::new(), holds, 0).map_err(decode)?.holds;
    }
    for id in p::lots_to_load(points, op) {
        let lot: Option<p::LotColumns> = sqlx::query_as(&p::one_lot_sql())
            .bind(app_seq)
            .bind(user)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(lot) = lot.map(p::lot_of) {
            points.lots.insert(lot.id, lot);
        }
    }
    Ok(())
}

pub(crate) async fn lock_by_index(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    now: i64,
) -> Result<Locked, sqlx::Error> {
    sqlx::query_as(LOCK_ACCOUNT_BY_INDEX)
        .bind(app_seq)
        .bind(user)
        .bind(now)
        .fetch_one(tx)
        .await
}

/// Writes `plan` for `user`; the seq of its last entry (0 if it has none).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    op: &Op,
    plan: &Plan,
    reason: &str,
    cause: &Cause,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let mut seq = 0;
    for row in p::entry_rows(plan, op, reason, cause) {
        seq = sqlx::query_scalar(p::INSERT_ENTRY)
            .bind(app_seq)
            .bind(user)
            .bind(row.kind)
            .bind(row.amount)
            .bind(row.reason)
            .bind(row.allocation)
            .bind(now)
            .bind(row.cause.kind)
            .bind(row.cause.id)
            .bind(row.refers_to)
            .bind(row.shortfall)
            .fetch_one(&mut *tx)
            .await?;
    }
    for lot in &plan.changed_lots {
        sqlx::query(p::UPDATE_LOT)
            .bind(lot.remaining)
            .bind(lot.voided)
            .bind(lot.expired)
            .bind(app_seq)
            .bind(user)
            .bind(lot.id as i64)
            .execute(&mut *tx)
            .await?;
    }
    let (new_lot, new_hold) = p::renamed(plan, seq);
    if let Some(lot) = new_lot {
        sqlx::query(p::INSERT_LOT)
            .bind(app_seq)
            .bind(user)
            .bind(lot.id as i64)
            .bind(lot.amount)
            .bind(lot.remaining)
            .bind(lot.expires_us)
            .bind(lot.vests_us)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(hold) = new_hold {
        sqlx::query(p::INSERT_HOLD)
            .bind(app_seq)
            .bind(user)
            .bind(hold.id as i64)
            .bind(serde_json::to_string(&hold.taken).map_err(decode)?)
            .bind(hold.times_out_us)
            .execute(&mut *tx)
            .await?;
    }
    for hold in &plan.settled_holds {
        sqlx::query(p::DELETE_HOLD)
            .bind(app_seq)
            .bind(user)
            .bind(*hold as i64)
            .execute(&mut *tx)
            .await?;
    }
    let s = plan.summary;
    sqlx::query(p::SAVE_ACCOUNT)
        .bind(app_seq)
        .bind(user)
        .bind(s.debt)
        .bind(s.balance)
        .bind(s.pending)
        .bind(s.on_hold)
        .bind(s.valid_until_us)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(seq)
}

/// Keeps `answer` under the idempotency key, for a retry to find.
pub(crate) async fn remember<T: huiliu_store::Serialize>(
    tx: &mut PgConnection,
    app_seq: i64,
    scope: &str,
    key: &IdempotencyKey,
    answer: &T,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::PUT_IDEMPOTENCY)
        .bind(app_seq)
        .bind(scope)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(serde_json::to_string(answer).map_err(decode)?)
        .bind(now)
        .execute(tx)
        .await?;
    Ok(())
}

/// User `user_id`'s index in the app, if huiliu knows the user.
pub(crate) async fn user_index(
    tx: &mut PgConnection,
    app_seq: i64,
    user_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(p::USER_INDEX)
        .bind(app_seq)
        .bind(user_id)
        .fetch_optional(tx)
        .await
}

fn refused(error: PointsError) -> Result<PointsOutcome, sqlx::Error> {
    match error {
        PointsError::Insufficient { available } => Ok(PointsOutcome::Insufficient { available }),
        other => Err(decode(other)),
    }
}

pub(crate) async fn transact(
    pool: &PgPool,
    app_seq: i64,
    request: &PointsRequest,
) -> Result<PointsOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = &request.idempotency;
    let now = request.now_us;
    let locked: Option<Locked> = sqlx::query_as(LOCK_ACCOUNT)
        .bind(app_seq)
        .bind(request.user_id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    // Looked up under the account lock: a retry racing its first attempt waits
    // for it and then answers as it did (before the lock it could find neither
    // the key nor the points the first attempt spent).
    match crate::earlier(&mut tx, app_seq, p::POINTS_SCOPE, key).await? {
        Some(Earlier::Replay(receipt)) => return Ok(PointsOutcome::Replayed(receipt)),
        Some(Earlier::KeyReused) => return Ok(PointsOutcome::KeyReused),
        None => {}
    }
    let Some(locked) = locked else {
        return Ok(PointsOutcome::UnknownUser);
    };
    let user = locked.0;
    let op = p::op_of(&request.action);
    let points = load(&mut tx, app_seq, locked, &op).await?;
    let plan = match plan(points, &op, now) {
        Ok(plan) => plan,
        Err(e) => return refused(e),
    };
    let seq = write(
        &mut tx,
        app_seq,
        user,
        &op,
        &plan,
        &request.reason,
        &request.cause,
        now,
    )
    .await?;
    let receipt = p::receipt_of(&plan, seq);
    remember(&mut tx, app_seq, p::POINTS_SCOPE, key, &receipt, now).await?;
    tx.commit().await?;
    Ok(PointsOutcome::Done(receipt))
}

pub(crate) async fn settle(
    pool: &PgPool,
    app_seq: i64,
    request: &SettleRequest,
) -> Result<PointsOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = request.idempotency();
    let target: Option<(i64, String, Option<String>, Option<i64>)> = sqlx::query_as(p::ENTRY)
        .bind(app_seq)
        .bind(request.entry)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((user_index, kind, allocation, refers_to)) = target else {
        return Ok(PointsOutcome::UnknownEntry);
    };
    let target = Target {
        user_index,
        kind,
        allocation,
        refers_to,
    };
    let now = request.now_us;
    let user = target.user_index;
    let policy = settings(&mut tx, app_seq).await?.shortfall;
    let op = match p::settle_op(request.entry, &target, request.action, policy) {
        Ok(op) => op,
        Err(outcome) => return Ok(outcome),
    };
    // The account lock first: a concurrent settlement of the same entry waits
    // here and then finds the first one's answer.
    let locked = lock_by_index(&mut tx, app_seq, user, now).await?;
    let points = load(&mut tx, app_seq, locked, &op).await?;
    if let Some(Earlier::Replay(receipt)) =
        crate::earlier(&mut tx, app_seq, p::SETTLE_SCOPE, &key).await?
    {
        return Ok(PointsOutcome::Replayed(receipt));
    }
    let settled_by: Option<(i64, String)> = sqlx::query_as(p::SETTLED_BY)
        .bind(app_seq)
        .bind(request.entry)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(by) = settled_by {
        return Ok(p::already_settled(request.action, by));
    }
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
        &mut tx,
        app_seq,
        user,
        &op,
        &plan,
        &request.reason,
        &request.cause,
        now,
    )
    .await?;
    let receipt = p::receipt_of(&plan, seq);
    remember(&mut tx, app_seq, p::SETTLE_SCOPE, &key, &receipt, now).await?;
    tx.commit().await?;
    Ok(PointsOutcome::Done(receipt))
}

pub(crate) async fn settings(
    tx: &mut PgConnection,
    app_seq: i64,
) -> Result<p::PointsPolicy, sqlx::Error> {
    let stored: Option<(String, String)> = sqlx::query_as(p::GET_SETTINGS)
        .bind(app_seq)
        .fetch_optional(tx)
        .await?;
    p::policy_of(stored).map_err(decode)
}

/// Writes what time decided for accounts due at `now`; accounts another node
/// is sweeping are skipped.
pub(crate) async fn sweep(pool: &PgPool, now: i64, limit: i64) -> Result<usize, sqlx::Error> {
    let due: Vec<(i64, i64)> = sqlx::query_as(p::DUE_ACCOUNTS)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let cause = Cause::new("expiry", None);
    for (app_seq, user) in &due {
        let mut tx = pool.begin().await?;
        let locked = lock_by_index(&mut tx, *app_seq, *user, now).await?;
        let points = load(&mut tx, *app_seq, locked, &Op::Sweep).await?;
        let plan = plan(points, &Op::Sweep, now).map_err(decode)?;
        write(&mut tx, *app_seq, *user, &Op::Sweep, &plan, "", &cause, now).await?;
        tx.commit().await?;
    }
    Ok(due.len())
}

pub(crate) async fn summary(
    pool: &PgPool,
    app_seq: i64,
    user_id: &str,
    now_us: i64,
) -> Result<Option<p::PointsSummary>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let Some(user) = user_index(&mut connection, app_seq, user_id).await? else {
        return Ok(None);
    };
    let (debt, on_hold): (i64, i64) = sqlx::query_as(p::ACCOUNT)
        .bind(app_seq)
        .bind(user)
        .fetch_optional(&mut *connection)
        .await?
        .unwrap_or((0, 0));
    // Holds that timed out count as released: `Sweep` loads their lots.
    let points = load(&mut connection, app_seq, (user, debt, on_hold), &Op::Sweep).await?;
    Ok(Some(p::summary_of(points, now_us)))
}
