//! `POST /v1/points/transactions` (earn or spend points) and
//! `GET /v1/users/{user_id}/points`.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{json_object, require_idempotency_key, take_user_id, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::ids::UserId;
use huiliu_domain::time::to_micros;
use huiliu_store::points::{PointsOutcome, PointsReceipt, PointsRequest};
use huiliu_store::{IdempotencyKey, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

const MAX_REASON_CHARS: usize = 200;
/// A trillion points: far beyond any real transaction, far below overflow.
const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A points earn (positive `amount`) or spend (negative).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct PointsBody {
    #[schema(example = "u-10086")]
    user_id: String,
    /// Whole points: positive earns, negative spends; never 0.
    #[schema(example = 120)]
    amount: i64,
    /// Why (the cause shown in the history), 1–200 characters.
    #[schema(example = "order:202611240001")]
    reason: String,
    /// Required: a retry with the same key never counts twice.
    idempotency_key: String,
    /// When an earn's points expire (RFC 3339, in the future); none: they do not.
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PointsView {
    /// Spendable now (expired points do not count).
    pub balance: i64,
    /// Points owed after a reversal beyond the balance.
    pub debt: i64,
    /// Of the balance, what expires within 30 days.
    pub expiring_30_days: i64,
}

fn field_error(code: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

/// Earn or spend points.
#[utoipa::path(
    post, path = "/v1/points/transactions", tag = "points",
    request_body = PointsBody,
    responses(
        (status = 200, description = "`{\"transaction_id\", \"balance\"}`", body = Object),
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
        ],
    )
    .await?;
    let user_id = take_user_id(&mut body)?;
    let amount = match body
        .remove("amount")
        .as_ref()
        .map(|v| (v.as_i64(), v.is_f64()))
    {
        Some((Some(0), _)) => {
            return Err(field_error(
                "invalid_amount",
                "amount",
                "an amount of 0 changes nothing",
            ))
        }
        Some((Some(n), false)) if n.abs() <= MAX_AMOUNT => n,
        Some((Some(_), false)) => {
            return Err(field_error(
                "invalid_amount",
                "amount",
                format!("at most {MAX_AMOUNT} points either way"),
            ))
        }
        _ => {
            return Err(field_error(
                "invalid_amount",
                "amount",
                "amount is a whole number of points: positive earns, negative spends",
            ))
        }
    };
    let reason = match body.remove("reason") {
        Some(Value::String(r)) if !r.trim().is_empty() && r.chars().count() <= MAX_REASON_CHARS => {
            r
        }
        _ => {
            return Err(field_error(
                "invalid_reason",
                "reason",
                format!("reason is 1–{MAX_REASON_CHARS} characters"),
            ))
        }
    };
    let key = require_idempotency_key(&mut body)?;
    let now = jiff::Timestamp::now();
    let expires_us = match body.remove("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            let at: jiff::Timestamp = text.parse().map_err(|_| {
                field_error(
                    "invalid_time",
                    "expires_at",
                    "an RFC 3339 time with an offset",
                )
            })?;
            if at <= now {
                return Err(field_error(
                    "invalid_time",
                    "expires_at",
                    "the expiry is in the past",
                ));
            }
            if amount < 0 {
                return Err(field_error(
                    "invalid_time",
                    "expires_at",
                    "only earns expire",
                ));
            }
            Some(to_micros(at))
        }
        Some(_) => {
            return Err(field_error(
                "invalid_time",
                "expires_at",
                "an RFC 3339 time with an offset",
            ))
        }
    };
    // Without an explicit expiry an earn follows the app's policy.
    let expires_us = match expires_us {
        Some(at) => Some(at),
        None if amount > 0 => state
            .store
            .points_expiry_policy(&app)
            .await?
            .expires_at(now, &app.timezone)
            .map(to_micros),
        None => None,
    };
    let request_hash = huiliu_domain::messages::request_hash(&[
        user_id.as_str(),
        &amount.to_string(),
        &reason,
        &expires_us.map_or(String::new(), |e| e.to_string()),
    ]);
    let request = PointsRequest {
        user_id,
        amount,
        reason,
        expires_us,
        now_us: to_micros(now),
        idempotency: IdempotencyKey { key, request_hash },
    };
    match state
        .metrics
        .time_store(
            "points_transaction",
            state.store.points_transaction(&app, &request),
        )
        .await?
    {
        PointsOutcome::Done(receipt) | PointsOutcome::Replayed(receipt) => Ok(Json(receipt)),
        PointsOutcome::KeyReused => Err(ApiError::key_reused()),
        PointsOutcome::UnknownUser => Err(ApiError::unknown_user(&request.user_id)),
        PointsOutcome::Insufficient { available } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_points",
            format!("the user has {available} points to spend"),
        )
        .with_field("amount")),
    }
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
        debt: summary.debt,
        expiring_30_days: summary.expiring_30_days,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct EntryView {
    pub transaction_id: String,
    /// `earn` or `spend`.
    pub kind: String,
    pub amount: i64,
    pub reason: String,
    /// For a spend: the earns (by transaction id) whose points paid, and how many each.
    #[schema(value_type = Option<Object>)]
    pub lots: Option<serde_json::Map<String, Value>>,
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
        Some(text) => text
            .strip_prefix("ptx_")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
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
    Ok(Json(PointsSettings {
        expiry: state.store.points_expiry_policy(&app).await?,
    }))
}

/// Set the app's points policy (applies to earns from now on).
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
    let body = json_object(body, 4 * 1024, &["expiry"]).await?;
    let policy: huiliu_domain::points::ExpiryPolicy = body
        .get("expiry")
        .cloned()
        .ok_or_else(|| field_error("missing_field", "expiry", "expiry is required"))
        .and_then(|value| {
            serde_json::from_value(value).map_err(|e| {
                field_error(
                    "invalid_expiry",
                    "expiry",
                    format!("{{\"kind\": \"never\" | \"days\" | \"end_of_month\" | \"end_of_year\", \"days\"?: 0–3650}}: {e}"),
                )
            })
        })?;
    if let huiliu_domain::points::ExpiryPolicy::Days { days } = policy {
        if days > 3650 {
            return Err(field_error("invalid_expiry", "expiry.days", "0–3650 days"));
        }
    }
    state.store.put_points_expiry_policy(&app, &policy).await?;
    Ok(Json(PointsSettings { expiry: policy }))
}
