//! `GET|POST /wechat/{app_id}/callback`: WeChat's message push for the app.
//!
//! GET is WeChat's check of the URL (answer `echostr` when the signature holds).
//! POST carries events, plaintext or in safe mode (`encrypt_type=aes`), as XML or
//! JSON. huiliu reads the subscription events: a prompt's answers and a settings
//! change become credits exactly as `POST /v1/subscriptions` would (an acceptance
//! reported by both paths counts once), and a send's final result settles a
//! message whose outcome was unknown. Everything else is acknowledged and ignored.
//! WeChat retries a push it got no `success` for, so a push is recorded once.

use crate::api::error::ApiError;
use crate::api::extract::{as_utf8, read_body, PathText};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use huiliu_domain::apps::AppId;
use huiliu_domain::credits::AnswerSource;
use huiliu_domain::time::to_micros;
use huiliu_domain::wechat::WechatSettings;
use huiliu_domain::wechat_push::{self, SubscriptionEvent};
use huiliu_store::messages::SentEvent;
use huiliu_store::{AppRecord, IdempotencyKey, Store, SubscriptionReport};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct PushQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
}

/// The app and its opened WeChat settings, which must include the push token.
async fn app_and_settings(
    state: &AppState,
    app_id: &str,
) -> Result<(AppRecord, WechatSettings, String), ApiError> {
    let id = AppId::parse(app_id).map_err(|_| ApiError::not_found("unknown_app", "no such app"))?;
    let app = state
        .store
        .find_app(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_app", "no such app"))?;
    let settings = crate::api::wechat::opened_settings(state, &app).await?;
    let token = settings.token.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "push_token_not_configured",
            "set the message-push Token in the app's WeChat settings first",
        )
    })?;
    Ok((app, settings, token))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| refused(&format!("the query lacks {name}")))
}

/// Checks the query's `signature` against the push token; the timestamp and nonce.
fn check_signature<'a>(query: &'a PushQuery, token: &str) -> Result<(&'a str, &'a str), ApiError> {
    let (timestamp, nonce) = (
        required(&query.timestamp, "timestamp")?,
        required(&query.nonce, "nonce")?,
    );
    wechat_push::verify(
        required(&query.signature, "signature")?,
        &[token, timestamp, nonce],
    )
    .map_err(|_| refused("the signature does not match the app's push token"))?;
    Ok((timestamp, nonce))
}

/// WeChat's check of the push URL.
pub async fn verify_url(
    State(state): State<AppState>,
    PathText(app_id): PathText,
    Query(query): Query<PushQuery>,
) -> Result<String, ApiError> {
    let (_, _, token) = app_and_settings(&state, &app_id).await?;
    check_signature(&query, &token)?;
    Ok(query.echostr.unwrap_or_default())
}

/// An event pushed by WeChat.
pub async fn receive(
    State(state): State<AppState>,
    PathText(app_id): PathText,
    Query(query): Query<PushQuery>,
    body: Body,
) -> Result<&'static str, ApiError> {
    let (app, settings, token) = app_and_settings(&state, &app_id).await?;
    let (timestamp, nonce) = check_signature(&query, &token)?;
    let bytes = read_body(body, 256 * 1024).await?;
    let bad_body = |e: wechat_push::PushError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_push", e.to_string())
    };
    let outer = wechat_push::parse_body(as_utf8(&bytes)?).map_err(bad_body)?;
    let message = if query.encrypt_type.as_deref() == Some("aes") {
        let encrypted = outer
            .get("Encrypt")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_push",
                    "safe mode without Encrypt",
                )
            })?;
        wechat_push::verify(
            required(&query.msg_signature, "msg_signature")?,
            &[&token, timestamp, nonce, encrypted],
        )
        .map_err(|_| refused("msg_signature does not match"))?;
        let aes_key = settings.aes_key.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "aes_key_not_configured",
                "set the EncodingAESKey in the app's WeChat settings for safe mode",
            )
        })?;
        let plain = wechat_push::decrypt(aes_key, encrypted, &settings.appid).map_err(bad_body)?;
        wechat_push::parse_body(&plain).map_err(bad_body)?
    } else {
        outer
    };
    let Some(event) = wechat_push::subscription_event(&message) else {
        return Ok("success");
    };
    // A retried push has the same content: its hash is the idempotency key.
    let push_hash = huiliu_domain::messages::request_hash(&[&message.to_string()]);
    let push_key = IdempotencyKey {
        key: format!(
            "wechat-push:{}",
            push_hash
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        request_hash: push_hash,
    };
    match event {
        SubscriptionEvent::Popup { openid, answers } => {
            record(
                &state,
                &app,
                &openid,
                answers,
                AnswerSource::PopupEvent,
                push_key,
            )
            .await?
        }
        SubscriptionEvent::Change { openid, answers } => {
            record(
                &state,
                &app,
                &openid,
                answers,
                AnswerSource::SettingsChange,
                push_key,
            )
            .await?
        }
        SubscriptionEvent::Sent { openid, results } => {
            for (template_id, msgid, errcode) in results {
                let event = SentEvent {
                    openid: openid.clone(),
                    template_id,
                    msgid,
                    errcode,
                    now_us: to_micros(jiff::Timestamp::now()),
                };
                if let Some(id) = state.store.settle_unknown_outcome(&app, &event).await? {
                    tracing::info!(message = %id, errcode, "WeChat's sent event settled a message whose outcome was unknown");
                }
            }
        }
    }
    Ok("success")
}

async fn record(
    state: &AppState,
    app: &AppRecord,
    openid: &str,
    answers: Vec<(String, huiliu_domain::credits::SubscribeResult)>,
    source: AnswerSource,
    push_key: IdempotencyKey,
) -> Result<(), ApiError> {
    let Some(user_id) = state.store.user_by_openid(app, openid).await? else {
        // Credits belong to a user huiliu knows; the company sets openids with
        // PUT /v1/users/{id}. Acknowledged so that WeChat does not retry.
        tracing::warn!(app = %app.id, "a subscription push names an openid no user has");
        return Ok(());
    };
    let mut kinds = HashMap::new();
    let mut parsed = Vec::new();
    for (template_id, result) in answers {
        if !kinds.contains_key(&template_id) {
            match state.store.get_template(app, &template_id).await? {
                Some(template) => {
                    kinds.insert(template_id.clone(), template.kind);
                }
                None => {
                    tracing::warn!(app = %app.id, %template_id, "a subscription push names a template huiliu does not know");
                    continue;
                }
            }
        }
        parsed.push((template_id.clone(), kinds[&template_id], result));
    }
    if parsed.is_empty() {
        return Ok(());
    }
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    parsed.dedup_by(|a, b| a.0 == b.0);
    let report = SubscriptionReport {
        user_id,
        answers: parsed,
        source,
        idempotency: Some(push_key),
    };
    state.store.record_subscriptions(app, &report).await?;
    Ok(())
}
