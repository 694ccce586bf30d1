//! `POST /v1/subscriptions` (a user's answers to a subscription prompt become
//! credits) and `GET /v1/users/{user_id}/subscriptions`.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{json_object, take_idempotency_key, take_user_id, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::credits::{report_hash, AnswerSource, SubscribeResult};
use huiliu_domain::ids::UserId;
use huiliu_domain::templates::parse_template_id;
use huiliu_store::{CreditBalances, IdempotencyKey, Recorded, Store, SubscriptionReport};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most templates one report may answer (WeChat asks for at most 5 at a time).
const MAX_ANSWERS: usize = 20;

/// The result of `wx.requestSubscribeMessage`, relayed by the company's backend.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct SubscriptionBody {
    #[schema(example = "u-10086")]
    user_id: String,
    /// Template id → `accept` | `reject` | `ban` | `filter` (also `acceptWithAudio`, `acceptWithAlert`).
    #[schema(value_type = Object, example = json!({"tmpl-ship": "accept"}))]
    results: Map<String, Value>,
    /// Makes a retry safe: the same key and body get the first answer; another body is 409.
    idempotency_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreditsResponse {
    /// One-time credits per reported template, after recording.
    #[schema(value_type = Object, example = json!({"tmpl-ship": 2}))]
    pub credits: CreditBalances,
}

fn field_error(code: &str, field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

/// Record a user's answers to a subscription prompt.
#[utoipa::path(
    post, path = "/v1/subscriptions", tag = "subscriptions",
    request_body = SubscriptionBody,
    responses(
        (status = 200, body = CreditsResponse),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 409, description = "The idempotency key was used with another body", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule, or a template is unknown", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_subscriptions(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<Json<CreditsResponse>, ApiError> {
    let mut body = json_object(body, 64 * 1024, &["user_id", "results", "idempotency_key"]).await?;
    let user_id = take_user_id(&mut body)?;
    let idempotency_key = take_idempotency_key(&mut body)?;
    let Some(Value::Object(results)) = body.remove("results") else {
        return Err(field_error(
            "missing_field",
            "results",
            "results is an object of template id → answer",
        ));
    };
    if results.is_empty() || results.len() > MAX_ANSWERS {
        return Err(field_error(
            "invalid_results",
            "results",
            format!("1–{MAX_ANSWERS} answers"),
        ));
    }
    let mut parsed = Vec::with_capacity(results.len());
    for (template_id, answer) in &results {
        let field = format!("results.{template_id}");
        let template_id =
            parse_template_id(template_id).map_err(|e| ApiError::invalid(&e.for_field(&field)))?;
        let Value::String(answer) = answer else {
            return Err(field_error("invalid_type", field, "an answer is a string"));
        };
        parsed.push((
            template_id,
            SubscribeResult::parse(answer, &field).map_err(|e| ApiError::invalid(&e))?,
        ));
    }
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut answers = Vec::with_capacity(parsed.len());
    for (template_id, result) in &parsed {
        let template = state
            .metrics
            .time_store("get_template", state.store.get_template(&app, template_id))
            .await?
            .ok_or_else(|| {
                field_error(
                    "unknown_template",
                    format!("results.{template_id}"),
                    format!("no template {template_id:?}; define it first with PUT /v1/templates/{template_id}"),
                )
            })?;
        answers.push((template_id.clone(), template.kind, *result));
    }
    let report = SubscriptionReport {
        idempotency: idempotency_key.map(|key| IdempotencyKey {
            key,
            request_hash: report_hash(user_id.as_str(), &parsed),
        }),
        user_id,
        answers,
        source: AnswerSource::ClientReport,
    };
    match state
        .metrics
        .time_store(
            "record_subscriptions",
            state.store.record_subscriptions(&app, &report),
        )
        .await?
    {
        Recorded::Done(credits) | Recorded::Replayed(credits) => {
            Ok(Json(CreditsResponse { credits }))
        }
        Recorded::KeyReused => Err(ApiError::key_reused()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TemplateCredits {
    pub template_id: String,
    /// One-time sends still allowed.
    pub credits: u32,
    /// One-time credits held by messages being sent right now.
    pub reserved: u32,
    /// A standing long-term permission.
    pub long_term: bool,
    /// The user's latest answer: `accept`, `reject` or `ban`.
    pub status: Option<String>,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionsResponse {
    pub templates: Vec<TemplateCredits>,
}

/// A user's credits and answers per template.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/subscriptions", tag = "subscriptions",
    params(("user_id" = String, Path, description = "The app's own user id")),
    responses(
        (status = 200, body = SubscriptionsResponse),
        (status = 404, description = "huiliu has never seen this user", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_user_subscriptions(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(user_id): PathText,
) -> Result<Json<SubscriptionsResponse>, ApiError> {
    let user_id = UserId::parse(user_id).map_err(|e| ApiError::invalid(&e))?;
    let records = state
        .metrics
        .time_store(
            "list_subscriptions",
            state.store.list_subscriptions(&app, &user_id),
        )
        .await?
        .ok_or_else(|| ApiError::unknown_user(&user_id))?;
    Ok(Json(SubscriptionsResponse {
        templates: records
            .into_iter()
            .map(|r| TemplateCredits {
                template_id: r.template_id,
                credits: r.state.credits,
                reserved: r.reserved,
                long_term: r.state.long_term,
                status: r.state.status.map(|s| s.as_str().to_string()),
                updated_at: app.timezone.format_rfc3339(r.updated_at),
            })
            .collect(),
    }))
}
