//! `POST /v1/events` and `GET /v1/events/{event_id}`.

use crate::api::auth::{Caller, SecretCaller};
use crate::api::error::{ApiError, ErrorBody, ErrorEnvelope};
use crate::api::extract::{as_utf8, json_error, read_body, PathText};
use crate::ingest::{ingest_raw_events, BatchReport};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use huiliu_domain::events::{EventSource, MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
use huiliu_domain::keys::KeyKind;
use huiliu_store::Store;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// A batch of behaviour events.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the request; the handler parses the body item by item
pub struct EventBatchRequest {
    /// 0 to 1000 events; the whole body at most 1 MiB.
    #[schema(max_items = 1000)]
    events: Vec<EventInput>,
}

/// One event, as sent by the app's backend or its mini-program.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct EventInput {
    /// The sender's id for this event (1–128 characters); a repeated id is a duplicate, not an error.
    #[schema(example = "evt-20261123-000001")]
    id: String,
    /// The app's own user id (1–128 characters).
    #[schema(example = "u-10086")]
    user_id: String,
    /// 1–64 characters of `[a-z0-9_.$]`.
    #[schema(example = "order_paid")]
    name: String,
    /// RFC 3339 with an offset, within the last 365 days and at most 1 day ahead.
    #[schema(example = "2026-11-23T20:15:00+08:00")]
    time: String,
    /// Free properties: a JSON object of at most 8 KiB.
    #[schema(value_type = Object)]
    props: Option<serde_json::Value>,
}

/// What became of the batch; sent only after the accepted events are committed.
#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub accepted: usize,
    /// Events whose id the app had sent before (or twice in this batch): stored once.
    pub duplicates: usize,
    pub rejected: Vec<RejectedEvent>,
}

/// An event refused by validation; the rest of the batch is unaffected.
#[derive(Serialize, ToSchema)]
pub struct RejectedEvent {
    /// Position in `events`.
    pub index: usize,
    pub error: ErrorBody,
}

impl From<BatchReport> for BatchResponse {
    fn from(report: BatchReport) -> Self {
        Self {
            accepted: report.accepted,
            duplicates: report.duplicates,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| {
                    let error = r.error.under(&format!("events[{}]", r.index));
                    RejectedEvent {
                        index: r.index,
                        error: ErrorBody::from(&error),
                    }
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Ingest a batch of events.
///
/// Both keys may post events: the secret key's are trusted (they may later earn
/// points), the publishable key's feed analytics only.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body = EventBatchRequest,
    responses(
        (status = 200, description = "Batch committed", body = BatchResponse),
        (status = 400, description = "Not JSON or not UTF-8", body = ErrorEnvelope),
        (status = 401, description = "Missing or unknown key", body = ErrorEnvelope),
        (status = 413, description = "More than 1000 events or 1 MiB", body = ErrorEnvelope),
        (status = 422, description = "Not a batch object", body = ErrorEnvelope),
    ),
    security(("secret_key" = []), ("publishable_key" = []))
)]
pub async fn post_events(
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<BatchResponse>, ApiError> {
    let bytes = read_body(body, MAX_BATCH_BYTES).await?;
    let text = as_utf8(&bytes)?;
    let batch: RawBatch = serde_json::from_str(text).map_err(|e| json_error(&e, "events"))?;
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} events in one batch; send at most {MAX_BATCH_EVENTS}",
                batch.events.len()
            ),
        )
        .with_field("events"));
    }
    let source = match caller.kind {
        KeyKind::Secret => EventSource::Server,
        KeyKind::Publishable => EventSource::Client,
    };
    let items: Vec<(usize, &str)> = batch
        .events
        .iter()
        .map(|raw| raw.get())
        .enumerate()
        .collect();
    let report = state
        .metrics
        .time_store(
            "ingest_events",
            ingest_raw_events(&state.store, &caller.app, source, &items, Timestamp::now()),
        )
        .await?;
    state.metrics.count_events(source, &report);
    if source == EventSource::Server {
        // Trusted events may earn points: the judging loop looks at once.
        state.awards_wake.notify_one();
    }
    Ok(Json(report.into()))
}

/// A stored event.
#[derive(Serialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The event's own time, in the app's time zone.
    pub time: String,
    #[schema(value_type = Object)]
    pub props: Box<RawValue>,
    /// `server` (secret key, trusted), `client` (publishable key) or `import`.
    pub source: String,
    pub received_at: String,
}

/// Read back one stored event by the id its sender gave it.
#[utoipa::path(
    get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The sender's event id")),
    responses(
        (status = 200, body = EventResponse),
        (status = 404, description = "No such event in this app", body = ErrorEnvelope),
    ),
    security(("secret_key" = []))
)]
pub async fn get_event(
    State(state): State<AppState>,
    SecretCaller(app): SecretCaller,
    PathText(event_id): PathText,
) -> Result<Json<EventResponse>, ApiError> {
    let event = state
        .metrics
        .time_store("get_event", state.store.get_event(&app, &event_id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_event",
                format!("no event {event_id:?} in this app"),
            )
        })?;
    Ok(Json(EventResponse {
        id: event.id,
        user_id: event.user_id,
        name: event.name,
        time: app.timezone.format_rfc3339(event.time),
        props: RawValue::from_string(event.props).map_err(|e| {
            ApiError::from(huiliu_store::StoreError::internal(format!(
                "stored props: {e}"
            )))
        })?,
        source: event.source.as_str().to_string(),
        received_at: app.timezone.format_rfc3339(event.received_at),
    }))
}
