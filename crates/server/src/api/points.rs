//! The points ledger over HTTP: earns, spends and holds
//! (`POST /v1/points/transactions`, `POST /v1/points/holds`), actions on an
//! earlier entry (capture, release, reverse), a user's points and history, and
//! the app's points policy.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{
    json_object, json_object_or_empty, require_idempotency_key, take_user_id, PathText,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::ids::UserId;
use huiliu_domain::time::to_micros;
use huiliu_store::points::{
    Cause, PointsAction, PointsOutcome, PointsReceipt, PointsRequest, SettleRequest, Settlement,
};
use huiliu_store::{AppRecord, IdempotencyKey, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

const MAX_REASON_CHARS: usize = 200;
const MAX_CAUSE_ID_CHARS: usize = 64;
/// A trillion points: far beyond any real transaction, far below overflow.
const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// How long a hold lasts unless the request says: long enough to issue a code
/// or create a fulfilment, short enough that a crashed redemption frees the points soon.
pub const DEFAULT_HOLD_SECONDS: i64 = 900;
const MAX_HOLD_SECONDS: i64 = 7 * 86_400;

/// What may cause an entry (`cause.type`).
pub const CAUSE_TYPES: &[&str] = &[
    "order",
    "rule",
    "task",
    "sign_in",
    "redemption",
    "referral",
    "campaign",
    "operator",
    "api",
];

/// A points earn (positive `amount`) or spend (negative).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct PointsBody {
    #[schema(example = "u-10086")]
    user_id: String,
    /// Whole points: positive earns, negative spends; never 0.
    #[schema(example = 120)]
    amount: i64,
    /// Why (shown in the history), 1–200 characters.
    #[schema(example = "order 202611240001 paid")]
    reason: String,
    /// Required: a retry with the same key never counts twice.
    idempotency_key: String,
    /// When an earn's points expire (RFC 3339, in the future); none: the app's policy.
    expires_at: Option<String>,
    /// A pending earn: its points count only from this time (RFC 3339, the
    /// refund window's end); until then it can be reversed as a void.
    vests_at: Option<String>,
    /// What caused the entry: `{"type": "order" | "rule" | "task" | "sign_in" |
    /// "redemption" | "referral" | "campaign" | "operator" | "api", "id"?: "…"}`;
    /// default `{"type": "api"}`.
    #[schema(value_type = Option<Object>, example = json!({"type": "order", "id": "202611240001"}))]
    cause: Option<Value>,
}

/// Points reserved for a redemption.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct HoldBody {
    user_id: String,
    /// Points to reserve, positive.
    amount: i64,
    reason: String,
    idempotency_key: String,
    /// Seconds until the hold is released by itself unless captured (1–604800, default 900).
    timeout_seconds: Option<i64>,
    #[schema(value_type = Option<Object>)]
    cause: Option<Value>,
}

/// An action on an earlier entry; every field is optional.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SettleBody {
    reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    cause: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct PointsView {
    /// Spendable now (expired, pending and held points do not count).
    pub balance: i64,
    /// Earned but not vested yet.
    pub pending: i64,
    /// Reserved by holds not captured or released yet.
    pub on_hold: i64,
    /// Points owed after a clawback beyond the balance (policy `allow_debt`).
    pub debt: i64,
    /// Of the balance, what expires within 30 days.
    pub expiring_30_days: i64,
    /// When the soonest of the balance's points expire.
    pub next_expiry_at: Option<String>,
}

fn field_error(code: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

fn take_amount(body: &mut Map<String, Value>, positive_only: bool) -> Result<i64, ApiError> {
    let rule = if positive_only {
        "amount is a positive whole number of points"
    } else {
        "amount is a whole number of points: positive earns, negative spends"
    };
    match body
        .remove("amount")
        .as_ref()
        .map(|v| (v.as_i64(), v.is_f64()))
    {
        Some((Some(0), _)) => Err(field_error(
            "invalid_amount",
            "amount",
            "an amount of 0 changes nothing",
        )),
        Some((Some(n), false)) if n.abs() > MAX_AMOUNT => Err(field_error(
            "invalid_amount",
            "amount",
            format!("at most {MAX_AMOUNT} points"),
        )),
        Some((Some(n), false)) if n > 0 || !positive_only => Ok(n),
        _ => Err(field_error("invalid_amount", "amount", rule)),
    }
}

pub(crate) fn take_reason(
    body: &mut Map<String, Value>,
    default: Option<&str>,
) -> Result<String, ApiError> {
    match (body.remove("reason"), default) {
        (None | Some(Value::Null), Some(default)) => Ok(default.to_string()),
        (Some(Value::String(r)), _)
            if !r.trim().is_empty() && r.chars().count() <= MAX_REASON_CHARS =>
        {
            Ok(r)
        }
        _ => Err(field_error(
            "invalid_reason",
            "reason",
            format!("reason is 1–{MAX_REASON_CHARS} characters"),
        )),
    }
}

pub(crate) fn take_cause(body: &mut Map<String, Value>) -> Result<Cause, ApiError> {
    let bad = |field: &str, message: String| field_error("invalid_cause", field, message);
    let Some(value) = body.remove("cause").filter(|v| !v.is_null()) else {
        return Ok(Cause::new("api", None));
    };
    let Value::Object(mut cause) = value else {
        return Err(bad(
            "cause",
            "cause is an object {\"type\", \"id\"?}".into(),
        ));
    };
    if let Some(unknown) = cause.keys().find(|k| !["type", "id"].contains(&k.as_str())) {
        return Err(bad(
            &format!("cause.{unknown}"),
            format!("unknown field {unknown:?}"),
        ));
    }
    let kind = match cause.remove("type") {
        Some(Value::String(t)) if CAUSE_TYPES.contains(&t.as_str()) => t,
        _ => {
            return Err(bad(
                "cause.type",
                format!("one of {}", CAUSE_TYPES.join(", ")),
            ))
        }
    };
    let id = match cause.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_CAUSE_ID_CHARS => {
            Some(id)
        }
        Some(_) => {
            return Err(bad(
                "cause.id",
                format!("1–{MAX_CAUSE_ID_CHARS} characters"),
            ))
        }
    };
    Ok(Cause { kind, id })
}

/// An optional RFC 3339 time in the future.
fn take_future_time(
    body: &mut Map<String, Value>,
    field: &str,
    now: jiff::Timestamp,
) -> Result<Option<i64>, ApiError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let at: jiff::Timestamp = text.parse().map_err(|_| {
                field_error("invalid_time", field, "an RFC 3339 time with an offset")
            })?;
            if at <= now {
                return Err(field_error(
                    "invalid_time",
                    field,
                    "the time is in the past",
                ));
            }
            Ok(Some(to_micros(at)))
        }
        Some(_) => Err(field_error(
            "invalid_time",
            field,
            "an RFC 3339 time with an offset",
        )),
    }
}

fn answer(
    outcome: PointsOutcome,
    user_id: Option<&UserId>,
) -> Result<Json<PointsReceipt>, ApiError> {
    match outcome {
        PointsOutcome::Done(receipt) | PointsOutcome::Replayed(receipt) => Ok(Json(receipt)),
        PointsOutcome::KeyReused => Err(ApiError::key_reused()),
        PointsOutcome::UnknownUser => Err(match user_id {
            Some(user) => ApiError::unknown_user(user),
            None => ApiError::new(StatusCode::NOT_FOUND, "unknown_user", "unknown user"),
        }),
        PointsOutcome::Insufficient { available } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_points",
            format!("the user has {available} points to spend"),
        )
        .with_field("amount")),
        PointsOutcome::UnknownEntry => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_transaction",
            "no points transaction of this app has that id",
        )),
        PointsOutcome::NotApplicable { kind } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_applicable",
            format!("a {kind} entry cannot take this action"),
        )),
        PointsOutcome::HoldSettled { how } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "hold_settled",
            format!("the hold was {}", how.replace('_', " ")),
        )),
        PointsOutcome::AlreadyReversed { by } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_reversed",
            format!("{by} already undid this entry"),
        )),
    }
}

/// The app's points policy, from this node's cache when fresh.
async fn policy(
    state: &AppState,
    app: &AppRecord,
) -> Result<huiliu_store::points::PointsPolicy, ApiError> {
    if let Some(policy) = state.points_policies.get(&app.store_key) {
        return Ok(policy);
    }
    let policy = state.store.points_policy(app).await?;
    state.points_policies.put(app.store_key, policy);
    Ok(policy)
}

async fn record(
    state: &AppState,
    app: &AppRecord,
    request: PointsRequest,
) -> Result<Json<PointsReceipt>, ApiError> {
    let outcome = state
        .metrics
        .time_store(
            "points_transaction",
            state.store.points_transaction(app, &request),
        )
        .await?;
    answer(outcome, Some(&request.user_id))
}

/// Earn or spend points.
#[utoipa::path(
    post, path = "/v1/points/transactions", tag = "points",
    request_body = PointsBody,
    responses(
        (status = 200, description = "`{\"transaction_id\", \"kind\", \"amount\", \"balance\", \"pending\", \"on_hold\", \"debt\"}`", body = Object),
        (status = 404, description = "huiliu has never seen the user (`unknown_user`)", body = ErrorEnvelope),
        (status = 409, description = "A spend beyond the balance (`insufficient_points`), or the idempotency key was used with another body", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule (an amount of 0, an expiry in the past, …)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_transaction(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    let mut body = json_object(
        body,
        16 * 1024,
        &[
            "user_id",
            "amount",
            "reason",
            "idempotency_key",
            "expires_at",
            "vests_at",
            "cause",
        ],
    )
    .await?;
    let user_id = take_user_id(&mut body)?;
    let amount = take_amount(&mut body, false)?;
    let reason = take_reason(&mut body, None)?;
    let cause = take_cause(&mut body)?;
    let key = require_idempotency_key(&mut body)?;
    let now = jiff::Timestamp::now();
    let expires_us = take_future_time(&mut body, "expires_at", now)?;
    let vests_us = take_future_time(&mut body, "vests_at", now)?;
    if amount < 0 {
        for (field, given) in [("expires_at", expires_us), ("vests_at", vests_us)] {
            if given.is_some() {
                return Err(field_error("invalid_time", field, "only earns take a time"));
            }
        }
    }
    if let (Some(expires), Some(vests)) = (expires_us, vests_us) {
        if vests >= expires {
            return Err(field_error(
                "invalid_time",
                "vests_at",
                "the points would expire before they vest",
            ));
        }
    }
    // Without an explicit expiry an earn follows the app's policy.
    let expires_us = match expires_us {
        Some(at) => Some(at),
        None if amount > 0 => policy(&state, &app)
            .await?
            .expiry
            .expires_at(now, &app.timezone)
            .map(to_micros),
        None => None,
    };
    let optional = |t: Option<i64>| t.map_or(String::new(), |e| e.to_string());
    let request_hash = huiliu_domain::messages::request_hash(&[
        user_id.as_str(),
        &amount.to_string(),
        &reason,
        &optional(expires_us),
        &optional(vests_us),
        &cause.kind,
        cause.id.as_deref().unwrap_or(""),
    ]);
    let action = if amount > 0 {
        PointsAction::Earn {
            amount,
            expires_us,
            vests_us,
        }
    } else {
        PointsAction::Spend { amount: -amount }
    };
    let request = PointsRequest {
        user_id,
        action,
        reason,
        cause,
        now_us: to_micros(now),
        idempotency: IdempotencyKey { key, request_hash },
    };
    record(&state, &app, request).await
}

/// Reserve points for a redemption.
#[utoipa::path(
    post, path = "/v1/points/holds", tag = "points",
    request_body = HoldBody,
    responses(
        (status = 200, description = "The hold's receipt; its `transaction_id` names the hold", body = Object),
        (status = 404, description = "`unknown_user`", body = ErrorEnvelope),
        (status = 409, description = "`insufficient_points`, or the idempotency key was used with another body", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_hold(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    let mut body = json_object(
        body,
        16 * 1024,
        &[
            "user_id",
            "amount",
            "reason",
            "idempotency_key",
            "timeout_seconds",
            "cause",
        ],
    )
    .await?;
    let user_id = take_user_id(&mut body)?;
    let amount = take_amount(&mut body, true)?;
    let reason = take_reason(&mut body, None)?;
    let cause = take_cause(&mut body)?;
    let key = require_idempotency_key(&mut body)?;
    let timeout = match body.remove("timeout_seconds") {
        None | Some(Value::Null) => DEFAULT_HOLD_SECONDS,
        Some(v) => v
            .as_i64()
            .filter(|s| (1..=MAX_HOLD_SECONDS).contains(s))
            .ok_or_else(|| {
                field_error(
                    "invalid_timeout",
                    "timeout_seconds",
                    format!("1–{MAX_HOLD_SECONDS} seconds"),
                )
            })?,
    };
    let now_us = to_micros(jiff::Timestamp::now());
    let request_hash = huiliu_domain::messages::request_hash(&[
        "hold",
        user_id.as_str(),
        &amount.to_string(),
        &reason,
        &timeout.to_string(),
        &cause.kind,
        cause.id.as_deref().unwrap_or(""),
    ]);
    let request = PointsRequest {
        user_id,
        action: PointsAction::Hold {
            amount,
            times_out_us: now_us + timeout * 1_000_000,
        },
        reason,
        cause,
        now_us,
        idempotency: IdempotencyKey { key, request_hash },
    };
    record(&state, &app, request).await
}

fn entry_seq(id: &str) -> Result<i64, ApiError> {
    huiliu_store::points::parse_transaction_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_transaction",
            "a transaction id looks like ptx_42",
        )
    })
}

async fn settle(
    state: &AppState,
    app: &AppRecord,
    id: &str,
    action: Settlement,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    let entry = entry_seq(id)?;
    let mut body = json_object_or_empty(body, 4 * 1024, &["reason", "cause"]).await?;
    let default_reason = match action {
        Settlement::Capture => "hold captured",
        Settlement::Release => "hold released",
        Settlement::Reverse => "reversed",
    };
    let reason = take_reason(&mut body, Some(default_reason))?;
    let cause = take_cause(&mut body)?;
    let request = SettleRequest {
        entry,
        action,
        reason,
        cause,
        now_us: to_micros(jiff::Timestamp::now()),
    };
    let outcome = state
        .metrics
        .time_store("points_settle", state.store.points_settle(app, &request))
        .await?;
    answer(outcome, None)
}

/// Spend a hold's points for good (a redemption went through). A retry answers
/// as the first capture did.
#[utoipa::path(
    post, path = "/v1/points/holds/{transaction_id}/capture", tag = "points",
    params(("transaction_id" = String, Path, description = "The hold's transaction id")),
    request_body(content = SettleBody, description = "Optional"),
    responses(
        (status = 200, description = "The capture's receipt", body = Object),
        (status = 404, description = "`unknown_transaction`", body = ErrorEnvelope),
        (status = 409, description = "`hold_settled` (released, timed out) or `not_applicable` (not a hold)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn capture_hold(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    settle(&state, &app, &id, Settlement::Capture, body).await
}

/// Give a hold's points back to the lots they came from (a redemption was
/// cancelled). A hold not captured in time is released by itself.
#[utoipa::path(
    post, path = "/v1/points/holds/{transaction_id}/release", tag = "points",
    params(("transaction_id" = String, Path, description = "The hold's transaction id")),
    request_body(content = SettleBody, description = "Optional"),
    responses(
        (status = 200, description = "The release's receipt", body = Object),
        (status = 404, description = "`unknown_transaction`", body = ErrorEnvelope),
        (status = 409, description = "`hold_settled` (captured, timed out) or `not_applicable`", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn release_hold(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    settle(&state, &app, &id, Settlement::Release, body).await
}

/// Undo an earlier entry exactly: an earn is voided while pending, else clawed
/// back (what was already spent becomes debt or is recorded as `shortfall`,
/// as the app's policy says); a spend or a captured hold is refunded to the
/// lots that paid. A retry answers as the first reversal did.
#[utoipa::path(
    post, path = "/v1/points/transactions/{transaction_id}/reverse", tag = "points",
    params(("transaction_id" = String, Path, description = "The earn, spend or capture to undo")),
    request_body(content = SettleBody, description = "Optional"),
    responses(
        (status = 200, description = "The reversal's receipt (`kind` `void` or `reverse`)", body = Object),
        (status = 404, description = "`unknown_transaction`", body = ErrorEnvelope),
        (status = 409, description = "`already_reversed`, or `not_applicable` (holds, expiries and reversals are not reversed)", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn reverse_transaction(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
    body: Body,
) -> Result<Json<PointsReceipt>, ApiError> {
    settle(&state, &app, &id, Settlement::Reverse, body).await
}

/// A user's points.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/points", tag = "points",
    params(("user_id" = String, Path, description = "The app's own user id")),
    responses(
        (status = 200, body = PointsView),
        (status = 404, description = "huiliu has never seen this user", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_points(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<PointsView>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    let now = to_micros(jiff::Timestamp::now());
    let summary = state
        .metrics
        .time_store(
            "points_summary",
            state.store.points_summary(&app, &user_id, now),
        )
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    Ok(Json(PointsView {
        balance: summary.balance,
        pending: summary.pending,
        on_hold: summary.on_hold,
        debt: summary.debt,
        expiring_30_days: summary.expiring_30_days,
        next_expiry_at: summary.next_expiry_us.map(|at| {
            app.timezone
                .format_rfc3339(huiliu_domain::time::from_micros(at))
        }),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct EntryView {
    pub transaction_id: String,
    /// `earn`, `spend`, `hold`, `capture`, `release`, `void`, `reverse` or `expire`.
    pub kind: String,
    /// What the entry added to the user's points (negative: took).
    pub amount: i64,
    pub reason: String,
    /// `{"type", "id"}`; time's own entries say `expiry` or `hold_timeout`.
    #[schema(value_type = Object)]
    pub cause: Cause,
    /// The earlier entry this one acts on (the hold captured, the earn reversed, the lot expired).
    pub refers_to: Option<String>,
    /// For spends, holds and their refunds: the earns (by transaction id) whose
    /// points paid or came back, and how many each.
    #[schema(value_type = Option<Object>)]
    pub lots: Option<serde_json::Map<String, Value>>,
    /// A capped clawback: points it could not take back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<i64>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryView {
    pub entries: Vec<EntryView>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next: Option<String>,
}

const MAX_PAGE: u32 = 200;

/// A user's points entries, newest first.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/points/history", tag = "points",
    params(
        ("user_id" = String, Path, description = "The app's own user id"),
        ("limit" = Option<u32>, Query, description = "1–200 entries (default 50)"),
        ("before" = Option<String>, Query, description = "A transaction id: entries older than it"),
    ),
    responses(
        (status = 200, body = HistoryView),
        (status = 404, description = "huiliu has never seen this user", body = ErrorEnvelope),
        (status = 422, description = "A bad `limit` or `before`", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_history(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<HistoryView>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    if let Some(unknown) = query
        .keys()
        .find(|k| !["limit", "before"].contains(&k.as_str()))
    {
        return Err(field_error(
            "unknown_parameter",
            unknown,
            format!("unknown parameter {unknown:?}"),
        ));
    }
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(field_error(
                    "invalid_limit",
                    "limit",
                    format!("1–{MAX_PAGE}"),
                ))
            }
        },
    };
    let before = match query.get("before") {
        None => i64::MAX,
        Some(text) => huiliu_store::points::parse_transaction_id(text).ok_or_else(|| {
            field_error(
                "invalid_before",
                "before",
                "a transaction id such as ptx_42",
            )
        })?,
    };
    let entries = state
        .metrics
        .time_store(
            "points_history",
            state
                .store
                .points_history(&app, &user_id, before, limit + 1),
        )
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    let more = entries.len() > limit as usize;
    let entries: Vec<EntryView> = entries
        .into_iter()
        .take(limit as usize)
        .map(|e| EntryView {
            transaction_id: huiliu_store::points::transaction_id(e.seq),
            kind: e.kind,
            amount: e.amount,
            reason: e.reason,
            cause: e.cause,
            refers_to: e.refers_to.map(huiliu_store::points::transaction_id),
            shortfall: (e.shortfall != 0).then_some(e.shortfall),
            lots: e
                .allocation
                .and_then(|a| serde_json::from_str::<serde_json::Map<String, Value>>(&a).ok())
                .map(|lots| {
                    lots.into_iter()
                        .map(|(lot, points)| {
                            let id = lot
                                .parse::<i64>()
                                .map_or(lot, huiliu_store::points::transaction_id);
                            (id, points)
                        })
                        .collect()
                }),
            created_at: app
                .timezone
                .format_rfc3339(huiliu_domain::time::from_micros(e.created_us)),
        })
        .collect();
    let next = more
        .then(|| entries.last().map(|e| e.transaction_id.clone()))
        .flatten();
    Ok(Json(HistoryView { entries, next }))
}

/// The app's points policy.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsSettings {
    /// When earned points expire unless an earn gives `expires_at`:
    /// `{"kind": "never"}`, `{"kind": "days", "days": 365}` (end of the 365th
    /// local day after the earn), `{"kind": "end_of_month"}`, `{"kind": "end_of_year"}`;
    /// day ends are local midnight in the app's time zone.
    #[schema(value_type = Object, example = json!({"kind": "end_of_year"}))]
    pub expiry: huiliu_domain::points::ExpiryPolicy,
    /// A clawback of points already spent: `allow_debt` (the balance goes
    /// negative and new points repay it first; the default) or `cap` (take
    /// what is left, record the rest as the entry's `shortfall`).
    #[schema(example = "allow_debt")]
    pub shortfall: String,
}

fn settings_view(policy: huiliu_store::points::PointsPolicy) -> PointsSettings {
    PointsSettings {
        expiry: policy.expiry,
        shortfall: huiliu_store::points::shortfall_name(policy.shortfall).to_string(),
    }
}

/// Read the app's points policy.
#[utoipa::path(
    get, path = "/v1/points/settings", tag = "points",
    responses((status = 200, body = PointsSettings)),
    security(("secret_key" = []))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
) -> Result<Json<PointsSettings>, ApiError> {
    Ok(Json(settings_view(state.store.points_policy(&app).await?)))
}

/// Set the app's points policy (expiry applies to earns from now on). Fields
/// left out keep their value.
#[utoipa::path(
    put, path = "/v1/points/settings", tag = "points",
    request_body = PointsSettings,
    responses(
        (status = 200, body = PointsSettings),
        (status = 422, description = "Not a policy", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn put_settings(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<PointsSettings>, ApiError> {
    use huiliu_domain::points::{ExpiryPolicy, ShortfallPolicy};
    let body = json_object(body, 4 * 1024, &["expiry", "shortfall"]).await?;
    let mut policy = state.store.points_policy(&app).await?;
    if let Some(value) = body.get("expiry") {
        let expiry: ExpiryPolicy = serde_json::from_value(value.clone()).map_err(|e| {
            field_error(
                "invalid_expiry",
                "expiry",
                format!("{{\"kind\": \"never\" | \"days\" | \"end_of_month\" | \"end_of_year\", \"days\"?: 0–3650}}: {e}"),
            )
        })?;
        if let ExpiryPolicy::Days { days } = expiry {
            if days > 3650 {
                return Err(field_error("invalid_expiry", "expiry.days", "0–3650 days"));
            }
        }
        policy.expiry = expiry;
    }
    if let Some(value) = body.get("shortfall") {
        policy.shortfall = match value.as_str() {
            Some("allow_debt") => ShortfallPolicy::AllowDebt,
            Some("cap") => ShortfallPolicy::Cap,
            _ => {
                return Err(field_error(
                    "invalid_shortfall",
                    "shortfall",
                    "\"allow_debt\" or \"cap\"",
                ))
            }
        };
    }
    state.store.put_points_policy(&app, &policy).await?;
    state.points_policies.put(app.store_key, policy);
    Ok(Json(settings_view(policy)))
}
