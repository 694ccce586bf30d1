//! The message outbox on PostgreSQL, shared by every node: a claim locks due rows
//! with `FOR UPDATE SKIP LOCKED` (nodes claim disjoint messages without waiting
//! for each other) and takes users' in-flight slots and subscription rows in
//! (app, user) order, so two claims never deadlock.

use huiliu_domain::messages::{admit, Admission, CreditBalance, CreditMove};
use huiliu_store::messages::{
    self as m, ClaimRequest, ClaimedMessage, Enqueued, Finished, NewMessage, Outcome, SentEvent,
    MESSAGE_SCOPE,
};
use sqlx::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};

const BUSY_USER_DEFER_US: i64 = 100_000;

/// Due messages with what a send needs (so a claim reads them once): the user's
/// openid and whether the template is disabled come along.
const DUE_MESSAGES_LOCKED: &str =
    "SELECT m.id, m.app_seq, m.user_index, m.status, m.expires_us, m.reserved,
      m.template_id, m.data, m.page, m.attempts, u.openid, t.disabled_reason
    FROM messages m
    JOIN users u ON u.app_seq = m.app_seq AND u.user_index = m.user_index
    LEFT JOIN templates t ON t.app_seq = m.app_seq AND t.template_id = m.template_id
    WHERE m.status IN ('queued', 'sending', 'unknown') AND m.next_attempt_us <= $1
    ORDER BY m.next_attempt_us LIMIT $2 FOR UPDATE OF m SKIP LOCKED";

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Two statements and no explicit transaction: the facts, then the message with
/// its idempotency key in one `INSERT`. A concurrent request with the same key
/// loses on the key's primary key (retried by the caller, then answered as a
/// replay). Admission here is advice for the caller; the claim decides again.
pub(crate) async fn enqueue(
    pool: &PgPool,
    app_seq: i64,
    message: &NewMessage,
) -> Result<Enqueued, sqlx::Error> {
    let key = &message.idempotency;
    let facts: Option<m::AdmissionFacts> = sqlx::query_as(m::ADMISSION_FACTS)
        .bind(app_seq)
        .bind(message.user_id.as_str())
        .bind(&message.template_id)
        .bind(&key.key)
        .fetch_optional(pool)
        .await?;
    let (user, accepted) = match m::admit_message(message, facts).map_err(decode)? {
        m::Admitted::Answer(answer) => return Ok(answer),
        m::Admitted::Store(user, accepted) => (user, accepted),
    };
    sqlx::query(
        "WITH message AS (
           INSERT INTO messages (id, app_seq, user_index, template_id, data, page, tracking, status,
             next_attempt_us, expires_us, error, created_us, updated_us)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12))
         INSERT INTO idempotency_keys (app_seq, scope, key, request_hash, response, created_us)
         VALUES ($2, $13, $14, $15, $16, $12)",
    )
    .bind(&message.id)
    .bind(app_seq)
    .bind(user)
    .bind(&message.template_id)
    .bind(&message.data)
    .bind(&message.page)
    .bind(&message.tracking)
    .bind(&accepted.status)
    .bind(message.now_us)
    .bind(message.expires_us)
    .bind(&accepted.error)
    .bind(message.now_us)
    .bind(MESSAGE_SCOPE)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(serde_json::to_string(&accepted).map_err(decode)?)
    .execute(pool)
    .await?;
    Ok(Enqueued::Done(accepted))
}

type DueRow = (
    String,
    i64,
    i64,
    String,
    i64,
    bool,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

/// What a claim needs to send a message: data, page, attempts, openid, disabled reason.
type SendDetails = (String, Option<String>, i64, Option<String>, Option<String>);

/// A locked subscription: app, user, template, credits, reserved, long_term, status.
type BalanceRow = (i64, i64, String, i64, i64, bool, Option<String>);

/// A subscription's key: app, user, template.
type SubscriptionKey = (i64, i64, String);

/// Locks and reads the subscriptions of `keys` (in key order, like every claim
/// and finish, so that they never deadlock); missing rows read as empty.
async fn lock_balances(
    tx: &mut PgConnection,
    keys: &[SubscriptionKey],
) -> Result<HashMap<SubscriptionKey, (CreditBalance, Option<String>)>, sqlx::Error> {
    let mut sorted: Vec<&SubscriptionKey> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let rows: Vec<BalanceRow> = sqlx::query_as(
        "SELECT s.app_seq, s.user_index, s.template_id, s.credits, s.reserved, s.long_term, s.status
         FROM subscriptions s
         JOIN UNNEST($1::int8[], $2::int8[], $3::text[]) AS k(app_seq, user_index, template_id)
           ON s.app_seq = k.app_seq AND s.user_index = k.user_index AND s.template_id = k.template_id
         ORDER BY s.app_seq, s.user_index, s.template_id
         FOR UPDATE OF s",
    )
    .bind(sorted.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(sorted.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind(sorted.iter().map(|k| k.2.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut balances = HashMap::with_capacity(rows.len());
    for (app_seq, user, template_id, credits, reserved, long_term, status) in rows {
        balances.insert(
            (app_seq, user, template_id),
            (
                CreditBalance {
                    credits: u32::try_from(credits).map_err(decode)?,
                    reserved: u32::try_from(reserved).map_err(decode)?,
                    long_term,
                },
                status,
            ),
        );
    }
    Ok(balances)
}

/// Applies credit moves (in order; a key may repeat) to locked balances and writes
/// the new balances and their history rows in two statements.
async fn write_moves(
    tx: &mut PgConnection,
    balances: &mut HashMap<SubscriptionKey, (CreditBalance, Option<String>)>,
    moves: &[(SubscriptionKey, String, CreditMove)],
    now: i64,
) -> Result<(), sqlx::Error> {
    if moves.is_empty() {
        return Ok(());
    }
    let mut history = HistoryColumns::default();
    let mut touched: Vec<SubscriptionKey> = Vec::new();
    for (key, message_id, movement) in moves {
        // No subscription row: nothing was reserved and there is nothing to zero.
        let Some((balance, status)) = balances.get_mut(key) else {
            continue;
        };
        let (after, delta) = movement.apply(*balance);
        *balance = after;
        history.push(
            key,
            delta,
            &after,
            status.clone(),
            movement.cause(),
            message_id,
            now,
        );
        if !touched.contains(key) {
            touched.push(key.clone());
        }
    }
    let finals: Vec<(&SubscriptionKey, &CreditBalance)> =
        touched.iter().map(|k| (k, &balances[k].0)).collect();
    sqlx::query(
        "UPDATE subscriptions s SET credits = v.credits, reserved = v.reserved, long_term = v.long_term, updated_us = $1
         FROM UNNEST($2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::bool[])
           AS v(app_seq, user_index, template_id, credits, reserved, long_term)
         WHERE s.app_seq = v.app_seq AND s.user_index = v.user_index AND s.template_id = v.template_id",
    )
    .bind(now)
    .bind(finals.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
    .bind(finals.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
    .bind(finals.iter().map(|(k, _)| k.2.clone()).collect::<Vec<_>>())
    .bind(finals.iter().map(|(_, b)| i64::from(b.credits)).collect::<Vec<_>>())
    .bind(finals.iter().map(|(_, b)| i64::from(b.reserved)).collect::<Vec<_>>())
    .bind(finals.iter().map(|(_, b)| b.long_term).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    history.insert(tx).await
}

/// Credit-history rows as columns, for one `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct HistoryColumns {
    app_seq: Vec<i64>,
    user_index: Vec<i64>,
    template_id: Vec<String>,
    delta: Vec<i64>,
    credits_after: Vec<i64>,
    long_term_after: Vec<bool>,
    status: Vec<Option<String>>,
    cause: Vec<&'static str>,
    message_id: Vec<String>,
    created_us: Vec<i64>,
}

impl HistoryColumns {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        key: &SubscriptionKey,
        delta: i64,
        after: &CreditBalance,
        status: Option<String>,
        cause: &'static str,
        message_id: &str,
        now: i64,
    ) {
        self.app_seq.push(key.0);
        self.user_index.push(key.1);
        self.template_id.push(key.2.clone());
        self.delta.push(delta);
        self.credits_after.push(i64::from(after.credits));
        self.long_term_after.push(after.long_term);
        self.status.push(status);
        self.cause.push(cause);
        self.message_id.push(message_id.to_string());
        self.created_us.push(now);
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO credit_history (app_seq, user_index, template_id, delta, credits_after,
               long_term_after, status, cause, message_id, created_us)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[],
               $6::bool[], $7::text[], $8::text[], $9::text[], $10::int8[])",
        )
        .bind(self.app_seq)
        .bind(self.user_index)
        .bind(self.template_id)
        .bind(self.delta)
        .bind(self.credits_after)
        .bind(self.long_term_after)
        .bind(self.status)
        .bind(self.cause)
        .bind(self.message_id)
        .bind(self.created_us)
        .execute(tx)
        .await
        .map(drop)
    }
}

pub(crate) async fn claim(
    pool: &PgPool,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
    let now = request.now_us;
    let mut tx = pool.begin().await?;
    let rows: Vec<DueRow> = sqlx::query_as(DUE_MESSAGES_LOCKED)
        .bind(now)
        .bind(i64::from(request.limit))
        .fetch_all(&mut *tx)
        .await?;
    let mut expired = Vec::new();
    let mut deferred = Vec::new();
    let mut users_in_claim = HashSet::new();
    // Candidates: (app, user, message id, template).
    let mut candidates: Vec<(i64, i64, String, String)> = Vec::new();
    let mut details: HashMap<String, SendDetails> = HashMap::new();
    let mut moves = Vec::new();
    for row in rows {
        let (id, app_seq, user, status, expires_us, reserved, template_id) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6);
        if status == "queued" {
            details.insert(id.clone(), (row.7, row.8, row.9, row.10, row.11));
        }
        match status.as_str() {
            // The lease ran out while sending: the outcome is unknown. Never resent.
            "sending" => {
                sqlx::query(m::MARK_UNKNOWN)
                    .bind(now + request.reconcile_us)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                free_inflight(&mut tx, app_seq, user, &id).await?;
            }
            "unknown" => {
                sqlx::query(m::MARK_FAILED)
                    .bind("outcome_unknown")
                    .bind(None::<i64>)
                    .bind("no answer from WeChat and no sent event before the deadline")
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                if reserved {
                    moves.push(((app_seq, user, template_id), id, CreditMove::Release));
                }
            }
            _ if expires_us <= now => expired.push(id),
            _ if !users_in_claim.insert((app_seq, user)) => deferred.push(id),
            _ => candidates.push((app_seq, user, id, template_id)),
        }
    }
    // Lock order: users' slots and subscriptions by (app, user).
    candidates.sort();
    let taken: Vec<String> = sqlx::query_scalar(
        "INSERT INTO message_inflight (app_seq, user_index, message_id)
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[])
         ON CONFLICT (app_seq, user_index) DO NOTHING RETURNING message_id",
    )
    .bind(candidates.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(candidates.iter().map(|c| c.2.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let taken: HashSet<String> = taken.into_iter().collect();
    let (candidates, busy): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|c| taken.contains(&c.2));
    deferred.extend(busy.into_iter().map(|c| c.2));

    let keys: Vec<SubscriptionKey> = candidates
        .iter()
        .map(|c| (c.0, c.1, c.3.clone()))
        .chain(moves.iter().map(|m| m.0.clone()))
        .collect();
    let mut balances = lock_balances(&mut tx, &keys).await?;

    let mut claimed = Vec::new();
    let (mut skipped_ids, mut skip_reasons) = (Vec::new(), Vec::new());
    let mut skipped_slots = Vec::new();
    let (mut sending_ids, mut sending_reserved) = (Vec::new(), Vec::new());
    for (app_seq, user, id, template_id) in candidates {
        let Some((data, page, attempts, openid, disabled)) = details.remove(&id) else {
            continue;
        };
        let key = (app_seq, user, template_id.clone());
        let subscription = match balances.get(&key) {
            Some((balance, status)) => huiliu_domain::credits::Subscription {
                credits: balance.credits,
                long_term: balance.long_term,
                status: status
                    .as_deref()
                    .map(huiliu_store::parse_status)
                    .transpose()
                    .map_err(decode)?,
            },
            None => Default::default(),
        };
        let with_credit = match admit(openid.as_deref(), &subscription, disabled.is_some()) {
            Admission::Skip(reason) => {
                skipped_slots.push((app_seq, user, id.clone()));
                skipped_ids.push(id);
                skip_reasons.push(reason.as_str());
                continue;
            }
            Admission::SendWithCredit => true,
            Admission::SendLongTerm => false,
        };
        if with_credit {
            moves.push((key, id.clone(), CreditMove::Reserve));
        }
        sending_ids.push(id.clone());
        sending_reserved.push(with_credit);
        claimed.push(ClaimedMessage {
            id,
            app_key: app_seq,
            openid: openid.unwrap_or_default(),
            template_id,
            data,
            page,
            attempts: u32::try_from(attempts + 1).map_err(decode)?,
        });
    }
    write_moves(&mut tx, &mut balances, &moves, now).await?;
    if !sending_ids.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'sending', lease_holder = $1, next_attempt_us = $2,
               updated_us = $3, attempts = m.attempts + 1, reserved = v.reserved
             FROM UNNEST($4::text[], $5::bool[]) AS v(id, reserved) WHERE m.id = v.id AND m.id = ANY($4)",
        )
        .bind(&request.holder)
        .bind(request.lease_until_us)
        .bind(now)
        .bind(&sending_ids)
        .bind(&sending_reserved)
        .execute(&mut *tx)
        .await?;
    }
    if !skipped_ids.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'skipped', error = v.reason, updated_us = $1
             FROM UNNEST($2::text[], $3::text[]) AS v(id, reason) WHERE m.id = v.id AND m.id = ANY($2)",
        )
        .bind(now)
        .bind(&skipped_ids)
        .bind(&skip_reasons)
        .execute(&mut *tx)
        .await?;
        free_all_inflight(&mut tx, &skipped_slots).await?;
    }
    if !expired.is_empty() {
        sqlx::query("UPDATE messages SET status = 'expired', updated_us = $1 WHERE id = ANY($2)")
            .bind(now)
            .bind(&expired)
            .execute(&mut *tx)
            .await?;
    }
    if !deferred.is_empty() {
        sqlx::query("UPDATE messages SET next_attempt_us = $1 WHERE id = ANY($2)")
            .bind(now + BUSY_USER_DEFER_US)
            .bind(&deferred)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

async fn free_inflight(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(m::FREE_INFLIGHT)
        .bind(app_seq)
        .bind(user)
        .bind(id)
        .execute(tx)
        .await
        .map(drop)
}

/// Frees the slots of `slots` (app, user, message), by primary key.
async fn free_all_inflight(
    tx: &mut PgConnection,
    slots: &[(i64, i64, String)],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM message_inflight f USING UNNEST($1::int8[], $2::int8[], $3::text[]) AS v(app_seq, user_index, message_id)
         WHERE f.app_seq = v.app_seq AND f.user_index = v.user_index AND f.message_id = v.message_id",
    )
    .bind(slots.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(slots.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(slots.iter().map(|s| s.2.clone()).collect::<Vec<_>>())
        .execute(tx)
        .await
        .map(drop)
}

pub(crate) async fn finish(
    pool: &PgPool,
    holder: &str,
    now: i64,
    finished: &[Finished],
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = finished.iter().map(|f| f.id.clone()).collect();
    let held: Vec<(String, i64, i64, String, bool)> = sqlx::query_as(
        "SELECT id, app_seq, user_index, template_id, reserved FROM messages
         WHERE id = ANY($1) AND lease_holder = $2 AND status IN ('sending', 'unknown')
         ORDER BY app_seq, user_index FOR UPDATE",
    )
    .bind(&ids)
    .bind(holder)
    .fetch_all(&mut *tx)
    .await?;
    let held: HashMap<String, (i64, i64, String, bool)> = held
        .into_iter()
        .map(|(id, app_seq, user, template_id, reserved)| {
            (id, (app_seq, user, template_id, reserved))
        })
        .collect();
    let mut sent = (Vec::new(), Vec::new());
    let mut retry = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut failed = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unknown = (Vec::new(), Vec::new(), Vec::new());
    let mut moves = Vec::new();
    let mut recorded = Vec::new();
    for Finished { id, outcome } in finished {
        let Some((app_seq, user, template_id, reserved)) = held.get(id) else {
            continue;
        };
        recorded.push((*app_seq, *user, id.clone()));
        let movement = match outcome {
            Outcome::Sent { msgid } => {
                sent.0.push(id.clone());
                sent.1.push(msgid.clone());
                CreditMove::Consume
            }
            Outcome::Retry {
                at_us,
                errcode,
                errmsg,
            } => {
                retry.0.push(id.clone());
                retry.1.push(*at_us);
                retry.2.push(*errcode);
                retry.3.push(errmsg.clone());
                CreditMove::Release
            }
            Outcome::Failed {
                errcode,
                errmsg,
                zero_credits,
                disable_template,
            } => {
                failed.0.push(id.clone());
                failed.1.push(if errcode.is_some() {
                    "wechat_error"
                } else {
                    "send_failed"
                });
                failed.2.push(*errcode);
                failed.3.push(errmsg.clone());
                if *disable_template {
                    sqlx::query(m::DISABLE_TEMPLATE)
                        .bind("wechat_43107")
                        .bind(app_seq)
                        .bind(template_id)
                        .execute(&mut *tx)
                        .await?;
                }
                if *zero_credits {
                    CreditMove::Zero
                } else {
                    CreditMove::Release
                }
            }
            Outcome::Unknown { until_us, errmsg } => {
                unknown.0.push(id.clone());
                unknown.1.push(*until_us);
                unknown.2.push(errmsg.clone());
                continue;
            }
        };
        // A long-term send reserved nothing; only 43101 changes its permission.
        if *reserved || movement == CreditMove::Zero {
            moves.push(((*app_seq, *user, template_id.clone()), id.clone(), movement));
        }
    }
    let keys: Vec<SubscriptionKey> = moves.iter().map(|m| m.0.clone()).collect();
    let mut balances = lock_balances(&mut tx, &keys).await?;
    write_moves(&mut tx, &mut balances, &moves, now).await?;
    if !sent.0.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'sent', wechat_msgid = v.msgid, sent_us = $1, updated_us = $1,
               reserved = FALSE, error = NULL, errcode = NULL, errmsg = NULL
             FROM UNNEST($2::text[], $3::text[]) AS v(id, msgid) WHERE m.id = v.id AND m.id = ANY($2)",
        )
        .bind(now)
        .bind(&sent.0)
        .bind(&sent.1)
        .execute(&mut *tx)
        .await?;
    }
    if !retry.0.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'queued', next_attempt_us = v.at_us, errcode = v.errcode,
               errmsg = v.errmsg, updated_us = $1, reserved = FALSE, lease_holder = NULL
             FROM UNNEST($2::text[], $3::int8[], $4::int8[], $5::text[]) AS v(id, at_us, errcode, errmsg)
             WHERE m.id = v.id AND m.id = ANY($2)",
        )
        .bind(now)
        .bind(&retry.0)
        .bind(&retry.1)
        .bind(&retry.2)
        .bind(&retry.3)
        .execute(&mut *tx)
        .await?;
    }
    if !failed.0.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'failed', error = v.error, errcode = v.errcode,
               errmsg = v.errmsg, updated_us = $1, reserved = FALSE
             FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::text[]) AS v(id, error, errcode, errmsg)
             WHERE m.id = v.id AND m.id = ANY($2)",
        )
        .bind(now)
        .bind(&failed.0)
        .bind(&failed.1)
        .bind(&failed.2)
        .bind(&failed.3)
        .execute(&mut *tx)
        .await?;
    }
    if !unknown.0.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 'unknown', next_attempt_us = v.until_us, errmsg = v.errmsg,
               updated_us = $1
             FROM UNNEST($2::text[], $3::int8[], $4::text[]) AS v(id, until_us, errmsg) WHERE m.id = v.id AND m.id = ANY($2)",
        )
        .bind(now)
        .bind(&unknown.0)
        .bind(&unknown.1)
        .bind(&unknown.2)
        .execute(&mut *tx)
        .await?;
    }
    free_all_inflight(&mut tx, &recorded).await?;
    tx.commit().await?;
    Ok(recorded.len())
}

/// Settles the oldest unknown outcome of the event's user and template.
pub(crate) async fn settle(
    pool: &PgPool,
    app_seq: i64,
    event: &SentEvent,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let known: Option<String> = sqlx::query_scalar(m::MSGID_KNOWN)
        .bind(app_seq)
        .bind(&event.openid)
        .bind(&event.msgid)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_some() {
        return Ok(None);
    }
    let row: Option<(String, i64, bool)> = sqlx::query_as(
        "SELECT m.id, m.user_index, m.reserved FROM users u
         JOIN messages m ON m.app_seq = u.app_seq AND m.user_index = u.user_index
         WHERE u.app_seq = $1 AND u.openid = $2 AND m.template_id = $3 AND m.status = 'unknown'
         ORDER BY m.created_us LIMIT 1 FOR UPDATE OF m",
    )
    .bind(app_seq)
    .bind(&event.openid)
    .bind(&event.template_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user, reserved)) = row else {
        return Ok(None);
    };
    let now = event.now_us;
    let movement = if event.errcode == 0 {
        sqlx::query(m::MARK_SENT)
            .bind(&event.msgid)
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        CreditMove::Consume
    } else {
        sqlx::query(m::MARK_FAILED)
            .bind("wechat_error")
            .bind(event.errcode)
            .bind("WeChat's sent event reports the push failed")
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        CreditMove::Release
    };
    if reserved {
        let key = (app_seq, user, event.template_id.clone());
        let mut balances = lock_balances(&mut tx, std::slice::from_ref(&key)).await?;
        write_moves(&mut tx, &mut balances, &[(key, id.clone(), movement)], now).await?;
    }
    tx.commit().await?;
    Ok(Some(id))
}
