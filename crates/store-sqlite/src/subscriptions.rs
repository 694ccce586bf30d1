//! Subscription credits on SQLite: answers recorded on the writer thread, one
//! transaction per report; reads on the reader pool.

use crate::ingest::resolve_user_indexes;
use crate::writer::to_store_error;
use huiliu_domain::credits::PAIRING_WINDOW_SECONDS;
use huiliu_domain::time::to_micros;
use huiliu_store::pairing_of;
use huiliu_store::{
    sql, subscription_state, CreditBalances, Earlier, Recorded, StoreError, StoreResult,
    SubscriptionColumns, SubscriptionRecord, SubscriptionReport,
};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::SqlitePool;

const SCOPE: &str = "subscriptions";

pub(crate) fn record(
    tx: &Connection,
    app_seq: i64,
    report: &SubscriptionReport,
) -> StoreResult<Recorded> {
    if let Some(idempotency) = &report.idempotency {
        match crate::writer::earlier(tx, app_seq, SCOPE, idempotency)? {
            Some(Earlier::Replay(balances)) => return Ok(Recorded::Replayed(balances)),
            Some(Earlier::KeyReused) => return Ok(Recorded::KeyReused),
            None => {}
        }
    }
    let user_id = report.user_id.as_str();
    let user = resolve_user_indexes(tx, app_seq, &[user_id])?[user_id];
    let now = to_micros(Timestamp::now());
    let mut balances = CreditBalances::new();
    for (template_id, kind, result) in &report.answers {
        let current = tx
            .query_row(
                "SELECT credits, long_term, status FROM subscriptions
                 WHERE app_seq = ?1 AND user_index = ?2 AND template_id = ?3",
                params![app_seq, user, template_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(to_store_error)?
            .map(|(credits, long_term, status)| {
                subscription_state(credits, long_term, status.as_deref())
            })
            .transpose()?
            .unwrap_or_default();
        let pairing = pairing_of(*kind, *result, report.source);
        let paired_with = match pairing {
            Some(other) => tx
                .query_row(
                    sql::FIND_UNPAIRED,
                    params![
                        app_seq,
                        user,
                        template_id,
                        other.cause(),
                        now - PAIRING_WINDOW_SECONDS * 1_000_000
                    ],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map_err(to_store_error)?,
            None => None,
        };
        let change = match paired_with {
            Some(seq) => {
                tx.execute(sql::PAIR_ACCEPTANCE, [seq])
                    .map_err(to_store_error)?;
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
                tx.execute(
                    sql::PUT_SUBSCRIPTION,
                    params![
                        app_seq,
                        user,
                        template_id,
                        i64::from(after.credits),
                        after.long_term,
                        status,
                        now
                    ],
                )
                .map_err(to_store_error)?;
                tx.execute(
                    sql::INSERT_CREDIT_HISTORY,
                    params![
                        app_seq,
                        user,
                        template_id,
                        change.delta,
                        i64::from(after.credits),
                        after.long_term,
                        status,
                        report.source.cause(),
                        Option::<String>::None,
                        now,
                        unpaired
                    ],
                )
                .map_err(to_store_error)?;
                after
            }
        };
        balances.insert(template_id.clone(), state.credits);
    }
    if let Some(idempotency) = &report.idempotency {
        let response = serde_json::to_string(&balances).map_err(StoreError::internal)?;
        tx.execute(
            sql::PUT_IDEMPOTENCY,
            params![
                app_seq,
                SCOPE,
                idempotency.key,
                idempotency.request_hash,
                response,
                now
            ],
        )
        .map_err(to_store_error)?;
    }
    Ok(Recorded::Done(balances))
}

pub(crate) async fn list(
    reader: &SqlitePool,
    app_seq: i64,
    user_id: &str,
) -> StoreResult<Option<Vec<SubscriptionRecord>>> {
    let rows: Vec<SubscriptionColumns> = sqlx::query_as(sql::LIST_SUBSCRIPTIONS)
        .bind(app_seq)
        .bind(user_id)
        .fetch_all(reader)
        .await?;
    SubscriptionRecord::from_user_rows(rows)
}
