//! Subscription credits on PostgreSQL: each report in one transaction, the
//! user's subscription rows locked in template-id order (no deadlocks between
//! concurrent reports); a concurrent report with the same idempotency key loses
//! on the key's primary key and is retried, then answered as a replay.

use crate::ingest::resolve_user_indexes;
use huiliu_domain::credits::PAIRING_WINDOW_SECONDS;
use huiliu_domain::time::to_micros;
use huiliu_store::{
    pairing_of, sql, subscription_state, CreditBalances, Earlier, Recorded, StoreResult,
    SubscriptionColumns, SubscriptionRecord, SubscriptionReport,
};
use jiff::Timestamp;
use sqlx::PgPool;

const SCOPE: &str = "subscriptions";

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

pub(crate) async fn record(
    pool: &PgPool,
    app_seq: i64,
    report: &SubscriptionReport,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(idempotency) = &report.idempotency {
        match crate::earlier(&mut tx, app_seq, SCOPE, idempotency).await? {
            Some(Earlier::Replay(balances)) => return Ok(Recorded::Replayed(balances)),
            Some(Earlier::KeyReused) => return Ok(Recorded::KeyReused),
            None => {}
        }
    }
    let user_id = report.user_id.as_str();
    let user = resolve_user_indexes(&mut tx, app_seq, &[user_id]).await?[user_id];
    let now = to_micros(Timestamp::now());
    let mut balances = CreditBalances::new();
    for (template_id, kind, result) in &report.answers {
        sqlx::query(
            "INSERT INTO subscriptions (app_seq, user_index, template_id, credits, long_term, status, updated_us)
             VALUES ($1, $2, $3, 0, FALSE, NULL, $4) ON CONFLICT DO NOTHING",
        )
        .bind(app_seq)
        .bind(user)
        .bind(template_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (credits, long_term, status): (i64, bool, Option<String>) = sqlx::query_as(
            "SELECT credits, long_term, status FROM subscriptions
             WHERE app_seq = $1 AND user_index = $2 AND template_id = $3 FOR UPDATE",
        )
        .bind(app_seq)
        .bind(user)
        .bind(template_id)
        .fetch_one(&mut *tx)
        .await?;
        let current = subscription_state(credits, long_term, status.as_deref()).map_err(decode)?;
        let pairing = pairing_of(*kind, *result, report.source);
        let paired_with: Option<i64> = match pairing {
            Some(other) => {
                sqlx::query_scalar(sql::FIND_UNPAIRED)
                    .bind(app_seq)
                    .bind(user)
                    .bind(template_id)
                    .bind(other.cause())
                    .bind(now - PAIRING_WINDOW_SECONDS * 1_000_000)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let change = match paired_with {
            Some(seq) => {
                sqlx::query(sql::PAIR_ACCEPTANCE)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                Some(current.record_again(*result))
            }
            None => current.record_from(*kind, *result, report.source),
        };
        let unpaired = pairing.is_some() && paired_with.is_none();
        let state = match change {
            None => current,
            Some(change) => {
                let after = change.after;
                let status = after.status.map(|s| s.as_str());
                sqlx::query(sql::PUT_SUBSCRIPTION)
                    .bind(app_seq)
                    .bind(user)
                    .bind(template_id)
                    .bind(i64::from(after.credits))
                    .bind(after.long_term)
                    .bind(status)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::INSERT_CREDIT_HISTORY)
                    .bind(app_seq)
                    .bind(user)
                    .bind(template_id)
                    .bind(change.delta)
                    .bind(i64::from(after.credits))
                    .bind(after.long_term)
                    .bind(status)
                    .bind(report.source.cause())
                    .bind(Option::<String>::None)
                    .bind(now)
                    .bind(unpaired)
                    .execute(&mut *tx)
                    .await?;
                after
            }
        };
        balances.insert(template_id.clone(), state.credits);
    }
    if let Some(idempotency) = &report.idempotency {
        sqlx::query(sql::PUT_IDEMPOTENCY)
            .bind(app_seq)
            .bind(SCOPE)
            .bind(&idempotency.key)
            .bind(&idempotency.request_hash)
            .bind(serde_json::to_string(&balances).map_err(decode)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Recorded::Done(balances))
}

pub(crate) async fn list(
    pool: &PgPool,
    app_seq: i64,
    user_id: &str,
) -> StoreResult<Option<Vec<SubscriptionRecord>>> {
    let rows: Vec<SubscriptionColumns> = sqlx::query_as(sql::LIST_SUBSCRIPTIONS)
        .bind(app_seq)
        .bind(user_id)
        .fetch_all(pool)
        .await?;
    SubscriptionRecord::from_user_rows(rows)
}
