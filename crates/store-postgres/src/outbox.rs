//! The message outbox on PostgreSQL, shared by every node: a claim locks due rows
//! with `FOR UPDATE SKIP LOCKED` (nodes claim disjoint messages without waiting
//! for each other) and takes users' in-flight slots and subscription rows in
//! (app, user) order, so two claims never deadlock.

use huiliu_domain::messages::{admit, Admission, CreditBalance, CreditMove};
use huiliu_store::messages::{
    self as m, AcceptedMessage, ClaimRequest, ClaimedMessage, Enqueued, Finished, NewMessage,
    Outcome, MESSAGE_SCOPE,
};
use huiliu_store::{sql, subscription_state};
use sqlx::{PgConnection, PgPool};
use std::collections::HashSet;

const BUSY_USER_DEFER_US: i64 = 100_000;

const DUE_MESSAGES_LOCKED: &str =
    "SELECT id, app_seq, user_index, status, expires_us, reserved, template_id
    FROM messages WHERE status IN ('queued', 'sending', 'unknown') AND next_attempt_us <= $1
    ORDER BY next_attempt_us LIMIT $2 FOR UPDATE SKIP LOCKED";

const GET_SUBSCRIPTION_LOCKED: &str =
    "SELECT credits, reserved, long_term, status FROM subscriptions
    WHERE app_seq = $1 AND user_index = $2 AND template_id = $3 FOR UPDATE";

const HELD_MESSAGE_LOCKED: &str = "SELECT app_seq, user_index, template_id, reserved FROM messages
    WHERE id = $1 AND lease_holder = $2 AND status IN ('sending', 'unknown') FOR UPDATE";

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

pub(crate) async fn enqueue(
    pool: &PgPool,
    app_seq: i64,
    message: &NewMessage,
) -> Result<Enqueued, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let key = &message.idempotency;
    let earlier: Option<(Vec<u8>, String)> = sqlx::query_as(sql::FIND_IDEMPOTENCY)
        .bind(app_seq)
        .bind(MESSAGE_SCOPE)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((hash, response)) = earlier {
        return Ok(if hash == key.request_hash {
            Enqueued::Replayed(serde_json::from_str(&response).map_err(decode)?)
        } else {
            Enqueued::KeyReused
        });
    }
    let user: Option<(i64, Option<String>)> = sqlx::query_as(m::FIND_USER_FOR_MESSAGE)
        .bind(app_seq)
        .bind(message.user_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some((user, openid)) = user else {
        return Ok(Enqueued::UnknownUser);
    };
    let (admission, _) = admission(
        &mut tx,
        app_seq,
        user,
        &message.template_id,
        openid.as_deref(),
        false,
    )
    .await?;
    let skip = match admission {
        Admission::Skip(reason) => Some(reason.as_str()),
        _ => None,
    };
    let accepted = AcceptedMessage {
        id: message.id.clone(),
        status: if skip.is_some() { "skipped" } else { "queued" }.into(),
        error: skip.map(str::to_string),
    };
    sqlx::query(m::INSERT_MESSAGE)
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
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::PUT_IDEMPOTENCY)
        .bind(app_seq)
        .bind(MESSAGE_SCOPE)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(serde_json::to_string(&accepted).map_err(decode)?)
        .bind(message.now_us)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Enqueued::Done(accepted))
}

type SubscriptionRow = (i64, i64, bool, Option<String>);

async fn subscription_row(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    template_id: &str,
    lock: bool,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query_as(if lock {
        GET_SUBSCRIPTION_LOCKED
    } else {
        m::GET_SUBSCRIPTION
    })
    .bind(app_seq)
    .bind(user)
    .bind(template_id)
    .fetch_optional(tx)
    .await
}

async fn admission(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    template_id: &str,
    openid: Option<&str>,
    lock: bool,
) -> Result<(Admission, CreditBalance), sqlx::Error> {
    let disabled: Option<(Option<String>,)> = sqlx::query_as(m::TEMPLATE_DISABLED)
        .bind(app_seq)
        .bind(template_id)
        .fetch_optional(&mut *tx)
        .await?;
    let (subscription, reserved) =
        match subscription_row(tx, app_seq, user, template_id, lock).await? {
            Some((credits, reserved, long_term, status)) => (
                subscription_state(credits, long_term, status.as_deref()).map_err(decode)?,
                u32::try_from(reserved).map_err(decode)?,
            ),
            None => Default::default(),
        };
    let balance = CreditBalance {
        credits: subscription.credits,
        reserved,
        long_term: subscription.long_term,
    };
    let disabled = disabled.and_then(|(reason,)| reason).is_some();
    Ok((admit(openid, &subscription, disabled), balance))
}

async fn move_credit(
    tx: &mut PgConnection,
    app_seq: i64,
    user: i64,
    template_id: &str,
    message_id: &str,
    movement: CreditMove,
    now_us: i64,
) -> Result<(), sqlx::Error> {
    let Some((credits, reserved, long_term, status)) =
        subscription_row(tx, app_seq, user, template_id, true).await?
    else {
        return Ok(());
    };
    let before = CreditBalance {
        credits: u32::try_from(credits).map_err(decode)?,
        reserved: u32::try_from(reserved).map_err(decode)?,
        long_term,
    };
    let (after, delta) = movement.apply(before);
    sqlx::query(m::SET_CREDITS)
        .bind(i64::from(after.credits))
        .bind(i64::from(after.reserved))
        .bind(after.long_term)
        .bind(now_us)
        .bind(app_seq)
        .bind(user)
        .bind(template_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::INSERT_CREDIT_HISTORY)
        .bind(app_seq)
        .bind(user)
        .bind(template_id)
        .bind(delta)
        .bind(i64::from(after.credits))
        .bind(after.long_term)
        .bind(status)
        .bind(movement.cause())
        .bind(message_id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

type DueRow = (String, i64, i64, String, i64, bool, String);

pub(crate) async fn claim(
    pool: &PgPool,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
    let now = request.now_us;
    let mut tx = pool.begin().await?;
    let mut rows: Vec<DueRow> = sqlx::query_as(DUE_MESSAGES_LOCKED)
        .bind(now)
        .bind(i64::from(request.limit))
        .fetch_all(&mut *tx)
        .await?;
    // Lock order: every claim takes users' slots and subscriptions by (app, user).
    rows.sort_by_key(|row| (row.1, row.2));
    let mut users_in_claim = HashSet::new();
    let mut claimed = Vec::new();
    for (id, app_seq, user, status, expires_us, reserved, template_id) in rows {
        match status.as_str() {
            "sending" => {
                sqlx::query(m::MARK_UNKNOWN)
                    .bind(now + request.reconcile_us)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                free_inflight(&mut tx, app_seq, &id).await?;
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
                    move_credit(
                        &mut tx,
                        app_seq,
                        user,
                        &template_id,
                        &id,
                        CreditMove::Release,
                        now,
                    )
                    .await?;
                }
            }
            _ if expires_us <= now => {
                end_message(&mut tx, &id, "expired", None, now).await?;
            }
            _ => {
                let taken = users_in_claim.insert((app_seq, user))
                    && sqlx::query(m::TAKE_INFLIGHT)
                        .bind(app_seq)
                        .bind(user)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                if !taken {
                    sqlx::query(m::DEFER_MESSAGE)
                        .bind(now + BUSY_USER_DEFER_US)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
                let (openid, data, page, attempts): (Option<String>, String, Option<String>, i64) =
                    sqlx::query_as(m::CLAIM_DETAILS)
                        .bind(app_seq)
                        .bind(&id)
                        .fetch_one(&mut *tx)
                        .await?;
                let (admission, _) = admission(
                    &mut tx,
                    app_seq,
                    user,
                    &template_id,
                    openid.as_deref(),
                    true,
                )
                .await?;
                let with_credit = match admission {
                    Admission::Skip(reason) => {
                        end_message(&mut tx, &id, "skipped", Some(reason.as_str()), now).await?;
                        free_inflight(&mut tx, app_seq, &id).await?;
                        continue;
                    }
                    Admission::SendWithCredit => true,
                    Admission::SendLongTerm => false,
                };
                if with_credit {
                    move_credit(
                        &mut tx,
                        app_seq,
                        user,
                        &template_id,
                        &id,
                        CreditMove::Reserve,
                        now,
                    )
                    .await?;
                }
                sqlx::query(m::MARK_SENDING)
                    .bind(&request.holder)
                    .bind(request.lease_until_us)
                    .bind(with_credit)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
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
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

async fn end_message(
    tx: &mut PgConnection,
    id: &str,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(m::END_MESSAGE)
        .bind(status)
        .bind(error)
        .bind(now)
        .bind(false)
        .bind(id)
        .execute(tx)
        .await
        .map(drop)
}

async fn free_inflight(tx: &mut PgConnection, app_seq: i64, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(m::FREE_INFLIGHT)
        .bind(app_seq)
        .bind(id)
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
    let mut recorded = 0;
    // Same lock order as claims: by message, whose users were claimed in order anyway.
    for Finished { id, outcome } in finished {
        let held: Option<(i64, i64, String, bool)> = sqlx::query_as(HELD_MESSAGE_LOCKED)
            .bind(id)
            .bind(holder)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((app_seq, user, template_id, reserved)) = held else {
            continue;
        };
        let movement = match outcome {
            Outcome::Sent { msgid } => {
                sqlx::query(m::MARK_SENT)
                    .bind(msgid)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                CreditMove::Consume
            }
            Outcome::Retry {
                at_us,
                errcode,
                errmsg,
            } => {
                sqlx::query(m::MARK_RETRY)
                    .bind(at_us)
                    .bind(errcode)
                    .bind(errmsg)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                CreditMove::Release
            }
            Outcome::Failed {
                errcode,
                errmsg,
                zero_credits,
                disable_template,
            } => {
                let error = if errcode.is_some() {
                    "wechat_error"
                } else {
                    "send_failed"
                };
                sqlx::query(m::MARK_FAILED)
                    .bind(error)
                    .bind(errcode)
                    .bind(errmsg)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if *disable_template {
                    sqlx::query(m::DISABLE_TEMPLATE)
                        .bind("wechat_43107")
                        .bind(app_seq)
                        .bind(&template_id)
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
                sqlx::query(m::MARK_UNKNOWN_OUTCOME)
                    .bind(until_us)
                    .bind(errmsg)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                free_inflight(&mut tx, app_seq, id).await?;
                recorded += 1;
                continue;
            }
        };
        if reserved || movement == CreditMove::Zero {
            move_credit(&mut tx, app_seq, user, &template_id, id, movement, now).await?;
        }
        free_inflight(&mut tx, app_seq, id).await?;
        recorded += 1;
    }
    tx.commit().await?;
    Ok(recorded)
}
