//! The message outbox on SQLite. Every write runs on the writer thread inside
//! `BEGIN IMMEDIATE`, so a claim is exclusive by construction: two claims (or a
//! claim and a finish) never interleave, in this process or another one sharing
//! the file.

use crate::writer::to_store_error;
use huiliu_domain::credits::Subscription;
use huiliu_domain::messages::{admit, Admission, CreditBalance, CreditMove};
use huiliu_store::messages::{
    self as m, ClaimRequest, ClaimedMessage, Enqueued, Finished, NewMessage, Outcome, SentEvent,
    MESSAGE_SCOPE,
};
use huiliu_store::{sql, subscription_state, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;

/// How far a message whose user is busy is pushed back.
const BUSY_USER_DEFER_US: i64 = 100_000;

fn one<T>(result: rusqlite::Result<T>) -> StoreResult<Option<T>> {
    result.optional().map_err(to_store_error)
}

pub(crate) fn enqueue(
    tx: &Connection,
    app_seq: i64,
    message: &NewMessage,
) -> StoreResult<Enqueued> {
    let key = &message.idempotency;
    let facts = one(tx.query_row(
        m::ADMISSION_FACTS,
        params![
            app_seq,
            message.user_id.as_str(),
            message.template_id,
            key.key
        ],
        |r| {
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
            ))
        },
    ))?;
    let (user, accepted) = match m::admit_message(message, facts)? {
        m::Admitted::Answer(answer) => return Ok(answer),
        m::Admitted::Store(user, accepted) => (user, accepted),
    };
    tx.execute(
        m::INSERT_MESSAGE,
        params![
            message.id,
            app_seq,
            user,
            message.template_id,
            message.data,
            message.page,
            message.tracking,
            accepted.status,
            message.now_us,
            message.expires_us,
            accepted.error,
            message.now_us
        ],
    )
    .map_err(to_store_error)?;
    let response = serde_json::to_string(&accepted).map_err(StoreError::internal)?;
    tx.execute(
        sql::PUT_IDEMPOTENCY,
        params![
            app_seq,
            MESSAGE_SCOPE,
            key.key,
            key.request_hash,
            response,
            message.now_us
        ],
    )
    .map_err(to_store_error)?;
    Ok(Enqueued::Done(accepted))
}

/// Whether a message may go, and the subscription's balance as it stands.
fn admission(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    template_id: &str,
    openid: Option<&str>,
) -> StoreResult<(Admission, CreditBalance)> {
    let disabled: Option<Option<String>> = one(tx.query_row(
        m::TEMPLATE_DISABLED,
        params![app_seq, template_id],
        |r| r.get(0),
    ))?;
    let (subscription, balance) = read_balance(tx, app_seq, user, template_id)?.unwrap_or_default();
    let disabled = disabled.flatten().is_some();
    Ok((admit(openid, &subscription, disabled), balance))
}

/// A subscription as the user's answers left it, and its balances; `None` when
/// the user never answered for the template.
fn read_balance(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    template_id: &str,
) -> StoreResult<Option<(Subscription, CreditBalance)>> {
    let row = one(tx.query_row(
        m::GET_SUBSCRIPTION,
        params![app_seq, user, template_id],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        },
    ))?;
    row.map(|(credits, reserved, long_term, status)| {
        let subscription = subscription_state(credits, long_term, status.as_deref())?;
        let balance = CreditBalance {
            credits: subscription.credits,
            reserved: u32::try_from(reserved).map_err(StoreError::internal)?,
            long_term,
        };
        Ok((subscription, balance))
    })
    .transpose()
}

/// Applies a credit move to a subscription and writes its history row.
fn move_credit(
    tx: &Connection,
    app_seq: i64,
    user: i64,
    template_id: &str,
    message_id: &str,
    movement: CreditMove,
    now_us: i64,
) -> StoreResult<()> {
    let Some((subscription, before)) = read_balance(tx, app_seq, user, template_id)? else {
        return Ok(());
    };
    let status = subscription.status.map(|s| s.as_str());
    let (after, delta) = movement.apply(before);
    tx.execute(
        m::SET_CREDITS,
        params![
            i64::from(after.credits),
            i64::from(after.reserved),
            after.long_term,
            now_us,
            app_seq,
            user,
            template_id
        ],
    )
    .map_err(to_store_error)?;
    tx.execute(
        sql::INSERT_CREDIT_HISTORY,
        params![
            app_seq,
            user,
            template_id,
            delta,
            i64::from(after.credits),
            after.long_term,
            status,
            movement.cause(),
            message_id,
            now_us,
            false
        ],
    )
    .map_err(to_store_error)?;
    Ok(())
}

pub(crate) fn claim(tx: &Connection, request: &ClaimRequest) -> StoreResult<Vec<ClaimedMessage>> {
    let now = request.now_us;
    let mut due = tx.prepare_cached(m::DUE_MESSAGES).map_err(to_store_error)?;
    let rows: Vec<(String, i64, i64, String, i64, bool, String)> = due
        .query_map(params![now, i64::from(request.limit)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .map_err(to_store_error)?
        .collect::<Result<_, _>>()
        .map_err(to_store_error)?;
    let mut users_in_claim = HashSet::new();
    let mut claimed = Vec::new();
    for (id, app_seq, user, status, expires_us, reserved, template_id) in rows {
        let execute = |statement: &str, values: &[&dyn rusqlite::ToSql]| {
            tx.execute(statement, values).map_err(to_store_error)
        };
        match status.as_str() {
            // The lease ran out while sending: the node died or hung, and the request
            // may have reached WeChat. Never resend; wait for evidence.
            "sending" => {
                execute(
                    m::MARK_UNKNOWN,
                    params![now + request.reconcile_us, now, id],
                )?;
                execute(m::FREE_INFLIGHT, params![app_seq, user, id])?;
            }
            "unknown" => {
                execute(
                    m::MARK_FAILED,
                    params![
                        "outcome_unknown",
                        Option::<i64>::None,
                        "no answer from WeChat and no sent event before the deadline",
                        now,
                        id
                    ],
                )?;
                if reserved {
                    move_credit(
                        tx,
                        app_seq,
                        user,
                        &template_id,
                        &id,
                        CreditMove::Release,
                        now,
                    )?;
                }
            }
            _ if expires_us <= now => {
                execute(
                    m::END_MESSAGE,
                    params!["expired", None::<String>, now, false, id],
                )?;
            }
            _ => {
                if !users_in_claim.insert((app_seq, user))
                    || execute(m::TAKE_INFLIGHT, params![app_seq, user, id])? == 0
                {
                    execute(m::DEFER_MESSAGE, params![now + BUSY_USER_DEFER_US, id])?;
                    continue;
                }
                let (openid, data, page, attempts): (Option<String>, String, Option<String>, i64) =
                    tx.query_row(m::CLAIM_DETAILS, params![app_seq, id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(to_store_error)?;
                let (admission, _) = admission(tx, app_seq, user, &template_id, openid.as_deref())?;
                let with_credit = match admission {
                    Admission::Skip(reason) => {
                        execute(
                            m::END_MESSAGE,
                            params!["skipped", reason.as_str(), now, false, id],
                        )?;
                        execute(m::FREE_INFLIGHT, params![app_seq, user, id])?;
                        continue;
                    }
                    Admission::SendWithCredit => true,
                    Admission::SendLongTerm => false,
                };
                if with_credit {
                    move_credit(
                        tx,
                        app_seq,
                        user,
                        &template_id,
                        &id,
                        CreditMove::Reserve,
                        now,
                    )?;
                }
                execute(
                    m::MARK_SENDING,
                    params![request.holder, request.lease_until_us, with_credit, now, id],
                )?;
                claimed.push(ClaimedMessage {
                    id,
                    app_key: app_seq,
                    openid: openid.unwrap_or_default(),
                    template_id,
                    data,
                    page,
                    attempts: u32::try_from(attempts + 1).map_err(StoreError::internal)?,
                });
            }
        }
    }
    Ok(claimed)
}

pub(crate) fn finish(
    tx: &Connection,
    holder: &str,
    now: i64,
    finished: &[Finished],
) -> StoreResult<usize> {
    let mut recorded = 0;
    for Finished { id, outcome } in finished {
        let held: Option<(i64, i64, String, bool)> =
            one(tx.query_row(m::HELD_MESSAGE, params![id, holder], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            }))?;
        let Some((app_seq, user, template_id, reserved)) = held else {
            continue;
        };
        let execute = |statement: &str, values: &[&dyn rusqlite::ToSql]| {
            tx.execute(statement, values).map_err(to_store_error)
        };
        let movement = match outcome {
            Outcome::Sent { msgid } => {
                execute(m::MARK_SENT, params![msgid, now, id])?;
                CreditMove::Consume
            }
            Outcome::Retry {
                at_us,
                errcode,
                errmsg,
            } => {
                execute(m::MARK_RETRY, params![at_us, errcode, errmsg, now, id])?;
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
                execute(m::MARK_FAILED, params![error, errcode, errmsg, now, id])?;
                if *disable_template {
                    execute(
                        m::DISABLE_TEMPLATE,
                        params!["wechat_43107", app_seq, template_id],
                    )?;
                }
                if *zero_credits {
                    CreditMove::Zero
                } else {
                    CreditMove::Release
                }
            }
            Outcome::Unknown { until_us, errmsg } => {
                execute(m::MARK_UNKNOWN_OUTCOME, params![until_us, errmsg, now, id])?;
                execute(m::FREE_INFLIGHT, params![app_seq, user, id])?;
                recorded += 1;
                continue;
            }
        };
        // A long-term send reserved nothing; only 43101 changes its permission.
        if reserved || movement == CreditMove::Zero {
            move_credit(tx, app_seq, user, &template_id, id, movement, now)?;
        }
        execute(m::FREE_INFLIGHT, params![app_seq, user, id])?;
        recorded += 1;
    }
    Ok(recorded)
}

/// Settles the oldest unknown outcome of the event's user and template.
pub(crate) fn settle(
    tx: &Connection,
    app_seq: i64,
    event: &SentEvent,
) -> StoreResult<Option<String>> {
    let known: Option<String> = one(tx.query_row(
        m::MSGID_KNOWN,
        params![app_seq, event.openid, event.msgid],
        |r| r.get(0),
    ))?;
    if known.is_some() {
        return Ok(None);
    }
    let row: Option<(String, i64, bool)> = one(tx.query_row(
        m::OLDEST_UNKNOWN,
        params![app_seq, event.openid, event.template_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    ))?;
    let Some((id, user, reserved)) = row else {
        return Ok(None);
    };
    let now = event.now_us;
    let movement = if event.errcode == 0 {
        tx.execute(m::MARK_SENT, params![event.msgid, now, id])
            .map_err(to_store_error)?;
        CreditMove::Consume
    } else {
        tx.execute(
            m::MARK_FAILED,
            params![
                "wechat_error",
                event.errcode,
                "WeChat's sent event reports the push failed",
                now,
                id
            ],
        )
        .map_err(to_store_error)?;
        CreditMove::Release
    };
    if reserved {
        move_credit(tx, app_seq, user, &event.template_id, &id, movement, now)?;
    }
    Ok(Some(id))
}
