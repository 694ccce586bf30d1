//! The records of the message outbox and the SQL both stores run for it.
//!
//! Placeholders appear in numeric order in every statement: SQLite binds them by
//! position of appearance.

use crate::{IdempotencyKey, StoreError};
use huiliu_domain::ids::UserId;
use huiliu_domain::messages::MessageStatus;

/// The idempotency scope of `POST /v1/messages`.
pub const MESSAGE_SCOPE: &str = "messages";

/// A message to accept into the outbox (already validated against its template).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub user_id: UserId,
    pub template_id: String,
    /// WeChat's `data` object, as JSON text.
    pub data: String,
    /// The page WeChat is given (tracking parameter included), if any.
    pub page: Option<String>,
    pub tracking: String,
    pub now_us: i64,
    pub expires_us: i64,
    pub idempotency: IdempotencyKey,
}

/// What accepting a message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// Accepted now (queued, or skipped with a reason).
    Done(AcceptedMessage),
    /// The same key and body were accepted before: the first answer again.
    Replayed(AcceptedMessage),
    /// The key was used before with a different body.
    KeyReused,
    /// huiliu has never seen the user.
    UnknownUser,
    /// The app has no WeChat settings to send with.
    WechatNotConfigured,
    /// The app has no such template.
    UnknownTemplate,
    /// The data breaks the template's field rules (nothing stored).
    Invalid(huiliu_domain::FieldError),
}

/// What `POST /v1/messages` answered, kept to answer a replay the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcceptedMessage {
    pub id: String,
    /// `queued` or `skipped`.
    pub status: String,
    /// The skip reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub user_id: String,
    pub template_id: String,
    pub status: MessageStatus,
    /// Why it failed or was skipped: `no_credit`, `wechat_error`, `outcome_unknown`, …
    pub error: Option<String>,
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub attempts: u32,
    pub wechat_msgid: Option<String>,
    pub page: Option<String>,
    pub tracking: String,
    pub created_us: i64,
    pub updated_us: i64,
    pub sent_us: Option<i64>,
    pub opened_us: Option<i64>,
}

/// The columns of [`MESSAGE_COLUMNS`], in order.
pub type MessageColumns = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

impl MessageRecord {
    pub fn from_columns(
        (
            id,
            user_id,
            template_id,
            status,
            error,
            errcode,
            errmsg,
            attempts,
            wechat_msgid,
            page,
            tracking,
            created_us,
            updated_us,
            sent_us,
            opened_us,
        ): MessageColumns,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id,
            user_id,
            template_id,
            status: MessageStatus::parse(&status)
                .ok_or_else(|| StoreError::internal(format!("unknown message status {status}")))?,
            error,
            errcode,
            errmsg,
            attempts: u32::try_from(attempts).map_err(StoreError::internal)?,
            wechat_msgid,
            page,
            tracking,
            created_us,
            updated_us,
            sent_us,
            opened_us,
        })
    }
}

/// A worker's request for due messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming node (the lease holder).
    pub holder: String,
    pub now_us: i64,
    /// The lease: if the node has not recorded an outcome by then, the outcome is unknown.
    pub lease_until_us: i64,
    /// How long an unknown outcome waits for a sent event before it fails.
    pub reconcile_us: i64,
    pub limit: u32,
}

/// A message a worker now holds (its credit reserved) and must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    pub id: String,
    /// The app's store key.
    pub app_key: i64,
    pub openid: String,
    pub template_id: String,
    pub data: String,
    pub page: Option<String>,
    /// Attempts including this one.
    pub attempts: u32,
}

/// The outcome of a claimed message's attempt, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent {
        msgid: String,
    },
    /// Back to the queue at `at_us`, the credit released.
    Retry {
        at_us: i64,
        errcode: Option<i64>,
        errmsg: String,
    },
    Failed {
        errcode: Option<i64>,
        errmsg: String,
        zero_credits: bool,
        disable_template: bool,
    },
    /// Sent maybe: the credit stays reserved until a sent event or `until_us`.
    Unknown {
        until_us: i64,
        errmsg: String,
    },
}

/// The columns a message is read with (joined with its user for `user_id`).
pub const MESSAGE_COLUMNS: &str = "m.id, u.user_id, m.template_id, m.status, m.error, m.errcode, m.errmsg,
    m.attempts, m.wechat_msgid, m.page, m.tracking, m.created_us, m.updated_us, m.sent_us, m.opened_us";

/// App $1's message $2.
pub const GET_MESSAGE: &str = "SELECT m.id, u.user_id, m.template_id, m.status, m.error, m.errcode, m.errmsg,
    m.attempts, m.wechat_msgid, m.page, m.tracking, m.created_us, m.updated_us, m.sent_us, m.opened_us
    FROM messages m JOIN users u ON u.app_seq = m.app_seq AND u.user_index = m.user_index
    WHERE m.app_seq = $1 AND m.id = $2";

/// What decides whether a message to user $2 of app $1 with template $3 and
/// idempotency key $4 may go: user_index, openid, credits, long_term, status, the
/// template's disabled reason, the app's WeChat appid (NULL when not configured),
/// the key's earlier request hash and response, and the template's definition
/// (NULL when unknown). No row for an unknown user.
/// The subscription is read by scalar subqueries: a join let PostgreSQL's generic
/// plan probe the subscriptions key without the user, scanning every subscriber.
pub const ADMISSION_FACTS: &str = "SELECT u.user_index, u.openid,
      (SELECT credits FROM subscriptions s WHERE s.app_seq = u.app_seq AND s.user_index = u.user_index AND s.template_id = p.template_id),
      (SELECT long_term FROM subscriptions s WHERE s.app_seq = u.app_seq AND s.user_index = u.user_index AND s.template_id = p.template_id),
      (SELECT status FROM subscriptions s WHERE s.app_seq = u.app_seq AND s.user_index = u.user_index AND s.template_id = p.template_id),
      t.disabled_reason, w.appid, i.request_hash, i.response, t.definition
    FROM (SELECT CAST($1 AS BIGINT) AS app_seq, CAST($2 AS TEXT) AS user_id, CAST($3 AS TEXT) AS template_id,
            CAST($4 AS TEXT) AS idempotency_key) p
    JOIN users u ON u.app_seq = p.app_seq AND u.user_id = p.user_id
    LEFT JOIN templates t ON t.app_seq = p.app_seq AND t.template_id = p.template_id
    LEFT JOIN wechat_settings w ON w.app_seq = p.app_seq
    LEFT JOIN idempotency_keys i ON i.app_seq = p.app_seq AND i.scope = 'messages' AND i.key = p.idempotency_key";

/// The columns of [`ADMISSION_FACTS`].
pub type AdmissionFacts = (
    i64,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

/// What to do with a new message, from [`ADMISSION_FACTS`] (`None`: unknown user).
pub enum Admitted {
    /// Store it (queued, or skipped as the answer says) for this user index.
    Store(i64, AcceptedMessage),
    /// Answer without storing anything (a replay, a reused key, a refusal).
    Answer(Enqueued),
}

pub fn admit_message(
    message: &NewMessage,
    facts: Option<AdmissionFacts>,
) -> Result<Admitted, StoreError> {
    let Some((
        user_index,
        openid,
        credits,
        long_term,
        status,
        disabled,
        appid,
        hash,
        response,
        definition,
    )) = facts
    else {
        return Ok(Admitted::Answer(Enqueued::UnknownUser));
    };
    let stored = hash.zip(response);
    match message.idempotency.earlier(stored)? {
        Some(crate::Earlier::Replay(accepted)) => {
            return Ok(Admitted::Answer(Enqueued::Replayed(accepted)))
        }
        Some(crate::Earlier::KeyReused) => return Ok(Admitted::Answer(Enqueued::KeyReused)),
        None => {}
    }
    if appid.is_none() {
        return Ok(Admitted::Answer(Enqueued::WechatNotConfigured));
    }
    // The data is checked against the template read in the same query: no
    // separate read, and never against a definition replaced in between.
    let Some(definition) = definition else {
        return Ok(Admitted::Answer(Enqueued::UnknownTemplate));
    };
    let template = crate::stored_template((definition, disabled.clone()))?;
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&message.data).map_err(StoreError::internal)?;
    if let Err(error) = template.check_data(&data) {
        return Ok(Admitted::Answer(Enqueued::Invalid(error)));
    }
    let subscription = crate::subscription_state(
        credits.unwrap_or(0),
        long_term.unwrap_or(false),
        status.as_deref(),
    )?;
    let admission =
        huiliu_domain::messages::admit(openid.as_deref(), &subscription, disabled.is_some());
    Ok(Admitted::Store(
        user_index,
        accepted(&message.id, admission),
    ))
}

/// What `POST /v1/messages` answers for a message admitted (or not) at once.
fn accepted(id: &str, admission: huiliu_domain::messages::Admission) -> AcceptedMessage {
    let skip = match admission {
        huiliu_domain::messages::Admission::Skip(reason) => Some(reason.as_str().to_string()),
        _ => None,
    };
    AcceptedMessage {
        id: id.to_string(),
        status: if skip.is_some() { "skipped" } else { "queued" }.into(),
        error: skip,
    }
}

/// A template's disabled reason (app $1, template $2); no row for an unknown template.
pub const TEMPLATE_DISABLED: &str =
    "SELECT disabled_reason FROM templates WHERE app_seq = $1 AND template_id = $2";

/// A subscription's credits, reserved, long_term, status (app $1, user $2, template $3).
pub const GET_SUBSCRIPTION: &str = "SELECT credits, reserved, long_term, status FROM subscriptions
    WHERE app_seq = $1 AND user_index = $2 AND template_id = $3";

/// Inserts a message: id $1, app $2, user $3, template $4, data $5, page $6, tracking $7,
/// status $8, next attempt $9, expires $10, error $11, created = updated $12.
pub const INSERT_MESSAGE: &str =
    "INSERT INTO messages (id, app_seq, user_index, template_id, data, page,
    tracking, status, next_attempt_us, expires_us, error, created_us, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)";

/// Due messages (now $1), oldest due first, at most $2: id, app, user, status,
/// expires_us, reserved, template.
pub const DUE_MESSAGES: &str =
    "SELECT id, app_seq, user_index, status, expires_us, reserved, template_id
    FROM messages WHERE status IN ('queued', 'sending', 'unknown') AND next_attempt_us <= $1
    ORDER BY next_attempt_us LIMIT $2";

/// Claims the user's one in-flight slot (app $1, user $2, message $3); one row when taken.
pub const TAKE_INFLIGHT: &str = "INSERT INTO message_inflight (app_seq, user_index, message_id)
    VALUES ($1, $2, $3) ON CONFLICT (app_seq, user_index) DO NOTHING";

/// Frees user $2's slot (app $1) if message $3 holds it; by primary key.
pub const FREE_INFLIGHT: &str =
    "DELETE FROM message_inflight WHERE app_seq = $1 AND user_index = $2 AND message_id = $3";

/// What a claim needs to send (app $1, message $2): openid, data, page, attempts.
pub const CLAIM_DETAILS: &str = "SELECT u.openid, m.data, m.page, m.attempts FROM messages m
    JOIN users u ON u.app_seq = m.app_seq AND u.user_index = m.user_index
    WHERE m.app_seq = $1 AND m.id = $2";

/// Marks message $5 sending: holder $1, lease end $2, reserved $3, at $4; attempts + 1.
pub const MARK_SENDING: &str = "UPDATE messages SET status = 'sending', lease_holder = $1,
    next_attempt_us = $2, reserved = $3, updated_us = $4, attempts = attempts + 1 WHERE id = $5";

/// Ends message $5 without sending: status $1, error $2, at $3, reserved $4.
pub const END_MESSAGE: &str = "UPDATE messages SET status = $1, error = $2, updated_us = $3,
    reserved = $4 WHERE id = $5";

/// Marks message $3 unknown: reconcile until $1, at $2.
pub const MARK_UNKNOWN: &str = "UPDATE messages SET status = 'unknown', next_attempt_us = $1,
    updated_us = $2 WHERE id = $3";

/// Sets a subscription's credits $1, reserved $2, long-term $3 at $4 (app $5, user $6, template $7).
pub const SET_CREDITS: &str =
    "UPDATE subscriptions SET credits = $1, reserved = $2, long_term = $3,
    updated_us = $4 WHERE app_seq = $5 AND user_index = $6 AND template_id = $7";

/// Pushes message $2's next look to $1 (its user has another send in flight).
pub const DEFER_MESSAGE: &str = "UPDATE messages SET next_attempt_us = $1 WHERE id = $2";

/// The message a worker holds (id $1, holder $2) and may still record: its app,
/// user, template, reserved flag.
pub const HELD_MESSAGE: &str = "SELECT app_seq, user_index, template_id, reserved FROM messages
    WHERE id = $1 AND lease_holder = $2 AND status IN ('sending', 'unknown')";

/// Records a send: msgid $1, at $2 (sent and updated), message $3.
pub const MARK_SENT: &str = "UPDATE messages SET status = 'sent', wechat_msgid = $1, sent_us = $2,
    updated_us = $2, reserved = FALSE, error = NULL, errcode = NULL, errmsg = NULL WHERE id = $3";

/// Back to the queue: next attempt $1, errcode $2, errmsg $3, at $4, message $5.
pub const MARK_RETRY: &str =
    "UPDATE messages SET status = 'queued', next_attempt_us = $1, errcode = $2,
    errmsg = $3, updated_us = $4, reserved = FALSE, lease_holder = NULL WHERE id = $5";

/// Fails: error $1, errcode $2, errmsg $3, at $4, message $5.
pub const MARK_FAILED: &str =
    "UPDATE messages SET status = 'failed', error = $1, errcode = $2, errmsg = $3,
    updated_us = $4, reserved = FALSE WHERE id = $5";

/// Unknown outcome: reconcile until $1, errmsg $2, at $3, message $4.
pub const MARK_UNKNOWN_OUTCOME: &str =
    "UPDATE messages SET status = 'unknown', next_attempt_us = $1,
    errmsg = $2, updated_us = $3 WHERE id = $4";

/// Disables template $3 of app $2 with reason $1.
pub const DISABLE_TEMPLATE: &str =
    "UPDATE templates SET disabled_reason = $1 WHERE app_seq = $2 AND template_id = $3";

/// A `subscribe_msg_sent_event` item for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    pub openid: String,
    pub template_id: String,
    pub msgid: String,
    pub errcode: i64,
    pub now_us: i64,
}

/// App $1's user with openid $2: user_id.
pub const USER_BY_OPENID: &str =
    "SELECT user_id FROM users WHERE app_seq = $1 AND openid = $2 ORDER BY user_index LIMIT 1";

/// The oldest message with an unknown outcome for openid $2 and template $3 of app
/// $1: id, user_index, reserved.
pub const OLDEST_UNKNOWN: &str = "SELECT m.id, m.user_index, m.reserved FROM users u
    JOIN messages m ON m.app_seq = u.app_seq AND m.user_index = u.user_index
    WHERE u.app_seq = $1 AND u.openid = $2 AND m.template_id = $3 AND m.status = 'unknown'
    ORDER BY m.created_us LIMIT 1";

/// Whether openid $2 of app $1 already has a message with WeChat msgid $3 (a sent
/// event pushed again).
pub const MSGID_KNOWN: &str = "SELECT m.id FROM users u
    JOIN messages m ON m.app_seq = u.app_seq AND m.user_index = u.user_index
    WHERE u.app_seq = $1 AND u.openid = $2 AND m.wechat_msgid = $3 LIMIT 1";

/// Marks app $2's message with tracking code $3 opened at $1, if user $4's, sent,
/// not opened yet, and the launch is not older than the send (5 minutes of clock
/// skew allowed between the mini-program and the server).
pub const MARK_OPENED: &str = "UPDATE messages SET opened_us = $1
    WHERE app_seq = $2 AND tracking = $3 AND opened_us IS NULL
      AND user_index = (SELECT user_index FROM users WHERE app_seq = $2 AND user_id = $4)
      AND sent_us IS NOT NULL AND sent_us - 300000000 <= $1";
