//! `POST /v1/messages` (a subscription message into the outbox) and
//! `GET /v1/messages/{id}`.

use crate::api::auth::SecretCaller;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::extract::{json_object, require_idempotency_key, take_user_id, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::messages::{tracked_page, tracking_code};
use huiliu_domain::templates::parse_template_id;
use huiliu_domain::time::{from_micros, to_micros};
use huiliu_store::messages::{AcceptedMessage, Enqueued, MessageRecord, NewMessage};
use huiliu_store::{IdempotencyKey, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

const MAX_PAGE_CHARS: usize = 512;
const DEFAULT_TTL_SECONDS: i64 = 24 * 3600;
const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// A subscription message to send to one user.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // documents the request; the handler parses it with field-level errors
pub struct MessageBody {
    #[schema(example = "u-10086")]
    user_id: String,
    #[schema(example = "tmpl-ship")]
    template_id: String,
    /// Field key → value (`{"thing1": "…"}`, or WeChat's `{"thing1": {"value": "…"}}`),
    /// checked against the template's field rules, counting characters.
    #[schema(value_type = Object, example = json!({"thing1": "您的订单已发货", "time2": "2026年11月24日 10:00"}))]
    data: Map<String, Value>,
    /// The mini-program page the card opens (`pages/order?id=7`); huiliu adds its
    /// tracking parameter `hl_t`. Without a page the card opens nothing.
    page: Option<String>,
    /// Required: the same key and body get the first answer; another body is 409.
    idempotency_key: String,
    /// Seconds the message may wait to be sent before it ends `expired` (60–2,592,000; default 86,400).
    ttl_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageError {
    /// `no_credit`, `no_openid`, `template_disabled`, `wechat_error`, `outcome_unknown`, `send_failed`.
    pub code: String,
    /// WeChat's errcode, when WeChat refused the send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// `queued`, `sending`, `sent`, `failed`, `skipped` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<MessageError>,
    pub user_id: String,
    pub template_id: String,
    pub attempts: u32,
    /// The page as sent to WeChat (with the tracking parameter).
    pub page: Option<String>,
    pub tracking: String,
    /// WeChat's msgid once sent.
    pub wechat_msgid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
    pub opened_at: Option<String>,
}

fn field_error(code: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

fn accepted_view(accepted: AcceptedMessage) -> Value {
    let mut view = serde_json::json!({"id": accepted.id, "status": accepted.status});
    if let Some(code) = accepted.error {
        view["error"] = serde_json::json!({ "code": code });
    }
    view
}

/// Queue a subscription message.
///
/// Checked before anything is stored: the template exists and `data` fits its
/// field rules (422 naming `data.<key>` and the rule), read with the rest of what
/// the decision needs in one query. A user without a live
/// credit (or without an openid) gets a message that is `skipped` at once, and
/// nothing is sent to WeChat.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = MessageBody,
    responses(
        (status = 202, description = "`{\"id\", \"status\": \"queued\" | \"skipped\", \"error\"?}`", body = Object),
        (status = 400, description = "Not JSON", body = ErrorEnvelope),
        (status = 404, description = "huiliu has never seen the user", body = ErrorEnvelope),
        (status = 409, description = "The idempotency key was used with another body, or the app has no WeChat settings", body = ErrorEnvelope),
        (status = 422, description = "A field breaks a rule, or the template is unknown", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn post_message(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut body = json_object(
        body,
        64 * 1024,
        &[
            "user_id",
            "template_id",
            "data",
            "page",
            "idempotency_key",
            "ttl_seconds",
        ],
    )
    .await?;
    let user_id = take_user_id(&mut body)?;
    let template_id = match body.remove("template_id") {
        Some(Value::String(id)) => {
            parse_template_id(&id).map_err(|e| ApiError::invalid(&e.for_field("template_id")))?
        }
        _ => {
            return Err(field_error(
                "missing_field",
                "template_id",
                "template_id is a string",
            ))
        }
    };
    let idempotency_key = require_idempotency_key(&mut body)?;
    let page = match body.remove("page") {
        None | Some(Value::Null) => None,
        Some(Value::String(page))
            if !page.is_empty()
                && page.chars().count() <= MAX_PAGE_CHARS
                && !page.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Some(page)
        }
        Some(_) => {
            return Err(field_error(
                "invalid_page",
                "page",
                format!("a page path of 1–{MAX_PAGE_CHARS} characters without spaces"),
            ))
        }
    };
    let ttl_seconds = match body.remove("ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_TTL_SECONDS,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ttl) if (60..=MAX_TTL_SECONDS).contains(&ttl) => ttl,
            _ => {
                return Err(field_error(
                    "invalid_ttl",
                    "ttl_seconds",
                    format!("whole seconds from 60 to {MAX_TTL_SECONDS}"),
                ))
            }
        },
        Some(_) => {
            return Err(field_error(
                "invalid_ttl",
                "ttl_seconds",
                "ttl_seconds is a number",
            ))
        }
    };
    let Some(Value::Object(data)) = body.remove("data") else {
        return Err(field_error(
            "missing_field",
            "data",
            "data is an object of field key → value",
        ));
    };
    // WeChat's form: every value wrapped as {"value": …}; keys sorted (serde_json's
    // map), so the same data always hashes the same.
    let wechat_data: Map<String, Value> = data
        .into_iter()
        .map(|(key, value)| {
            // Only an exact {"value": …} is unwrapped; anything else is wrapped as
            // it is and refused by the template check as not a string.
            let value = match value {
                Value::Object(mut wrapped)
                    if wrapped.len() == 1 && wrapped.contains_key("value") =>
                {
                    wrapped.remove("value").unwrap_or_default()
                }
                other => other,
            };
            (key, serde_json::json!({ "value": value }))
        })
        .collect();
    let data_text = Value::Object(wechat_data).to_string();
    let request_hash = huiliu_domain::messages::request_hash(&[
        user_id.as_str(),
        &template_id,
        &data_text,
        page.as_deref().unwrap_or("\u{0}"),
        &ttl_seconds.to_string(),
    ]);
    let tracking = tracking_code(rand::random());
    let now = to_micros(jiff::Timestamp::now());
    let message = NewMessage {
        id: format!("msg_{}", tracking_code(rand::random())),
        user_id,
        page: tracked_page(page.as_deref(), &tracking),
        template_id,
        data: data_text,
        tracking,
        now_us: now,
        expires_us: now + ttl_seconds * 1_000_000,
        idempotency: IdempotencyKey {
            key: idempotency_key,
            request_hash,
        },
    };
    match state
        .metrics
        .time_store(
            "enqueue_message",
            state.store.enqueue_message(&app, &message),
        )
        .await?
    {
        Enqueued::Done(accepted) => {
            if accepted.status == "queued" {
                state.outbox_wake.notify_waiters();
            }
            Ok((StatusCode::ACCEPTED, Json(accepted_view(accepted))))
        }
        Enqueued::Replayed(accepted) => Ok((StatusCode::ACCEPTED, Json(accepted_view(accepted)))),
        Enqueued::KeyReused => Err(ApiError::key_reused()),
        Enqueued::UnknownTemplate => Err(field_error(
            "unknown_template",
            "template_id",
            format!(
                "no template {:?}; define it with PUT /v1/templates/{{id}} or sync them from WeChat",
                message.template_id
            ),
        )),
        Enqueued::Invalid(error) => Err(ApiError::invalid(&error)),
        Enqueued::WechatNotConfigured => Err(ApiError::new(
            StatusCode::CONFLICT,
            "wechat_not_configured",
            "the app has no WeChat settings; set them with PUT /v1/wechat/settings",
        )),
        Enqueued::UnknownUser => Err(ApiError::not_found(
            "unknown_user",
            format!(
                "no user {:?} in this app; send their events or PUT /v1/users/{{id}} first",
                message.user_id.as_str()
            ),
        )),
    }
}

fn view(app: &huiliu_store::AppRecord, record: MessageRecord) -> MessageView {
    let at = |us: i64| app.timezone.format_rfc3339(from_micros(us));
    let error = record.error.map(|code| MessageError {
        code,
        errcode: record.errcode,
        message: record.errmsg.filter(|m| !m.is_empty()),
    });
    MessageView {
        id: record.id,
        status: record.status.public().into(),
        error,
        user_id: record.user_id,
        template_id: record.template_id,
        attempts: record.attempts,
        page: record.page,
        tracking: record.tracking,
        wechat_msgid: record.wechat_msgid,
        created_at: at(record.created_us),
        updated_at: at(record.updated_us),
        sent_at: record.sent_us.map(at),
        opened_at: record.opened_us.map(at),
    }
}

/// A message's status and, when it failed or was skipped, why.
#[utoipa::path(
    get, path = "/v1/messages/{message_id}", tag = "messages",
    params(("message_id" = String, Path, description = "The id `POST /v1/messages` returned")),
    responses(
        (status = 200, body = MessageView),
        (status = 404, description = "No such message in this app", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(id): PathText,
) -> Result<Json<MessageView>, ApiError> {
    let record = state
        .metrics
        .time_store("get_message", state.store.get_message(&app, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_message", format!("no message {id:?} in this app"))
        })?;
    Ok(Json(view(&app, record)))
}
