//! The HTTP API: routes, OpenAPI document and cross-cutting layers.

pub mod analytics;
pub mod auth;
pub mod callback;
pub mod earning;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod home;
pub mod liability;
pub mod mall;
pub mod messages;
pub mod points;
pub mod subscriptions;
pub mod templates;
pub mod tiers;
pub mod users;
pub mod wechat;

use crate::metrics::track_requests;
use crate::AppState;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "huiliu",
        description = "Growth and retention for WeChat mini-programs: events, users and more.\n\nAuthenticate with `Authorization: Bearer <key>`. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}` with a 4xx or 5xx status."
    ),
    paths(
        events::post_events,
        events::get_event,
        users::get_user,
        users::put_user,
        templates::put_template,
        templates::get_template,
        templates::list_templates,
        templates::check_data,
        templates::sync,
        subscriptions::post_subscriptions,
        subscriptions::get_user_subscriptions,
        messages::post_message,
        messages::get_message,
        points::post_transaction,
        points::post_hold,
        liability::get_liability,
        mall::put_reward,
        mall::list_rewards,
        mall::get_reward,
        mall::add_codes,
        mall::restock,
        mall::redeem,
        mall::get_redemption,
        mall::cancel_redemption,
        mall::fulfil_redemption,
        earning::put_rule,
        earning::list_rules,
        earning::delete_rule,
        earning::put_task,
        earning::list_tasks,
        earning::delete_task,
        earning::put_sign_in,
        earning::get_sign_in,
        earning::post_sign_in,
        earning::get_user_tasks,
        tiers::put_tiers,
        tiers::get_tiers,
        tiers::get_membership,
        tiers::post_growth,
        points::capture_hold,
        points::release_hold,
        points::reverse_transaction,
        points::get_points,
        points::get_history,
        points::get_settings,
        points::put_settings,
        wechat::put_settings,
        wechat::get_settings,
        analytics::get_active,
        analytics::get_retention,
        analytics::get_lifecycle,
        analytics::get_one_and_done,
        analytics::get_funnel,
        analytics::get_settings,
        analytics::put_settings,
        health::healthz,
        health::readyz,
        openapi_json,
    ),
    modifiers(&KeySchemes),
    tags(
        (name = "events", description = "Behaviour events"),
        (name = "users", description = "Users and their profiles"),
        (name = "templates", description = "Subscription-message templates and their field rules"),
        (name = "subscriptions", description = "Subscription answers and the credits they grant"),
        (name = "messages", description = "Subscription messages: queued, sent through WeChat with exact credit accounting, tracked"),
        (name = "mall", description = "The redemption mall: rewards, coupon-code pools, redemptions"),
        (name = "earning", description = "Earning rules on trusted events, tasks and the daily sign-in"),
        (name = "tiers", description = "Member tiers on growth value (成长值)"),
        (name = "points", description = "The points ledger: earns, spends, holds and reversals in whole points, lots with expiry"),
        (name = "wechat", description = "The app's WeChat settings"),
        (name = "analytics", description = "Active users, retention, lifecycle, one-and-done and funnels, in the app's time zone"),
        (name = "operations", description = "Probes and the API description"),
    )
)]
pub struct ApiDoc;

struct KeySchemes;

impl utoipa::Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "secret_key",
                "The app's secret key (hl_sk_…), for the company's backend",
            ),
            (
                "publishable_key",
                "The app's publishable key (hl_pk_…), for the mini-program: events only",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Request ids: `req-` and a process-unique counter behind a random per-process prefix,
/// unless the client sent its own `x-request-id`.
#[derive(Clone)]
struct NextRequestId {
    prefix: String,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// How long one request may take before it is abandoned (its transaction rolls back).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let make_id = NextRequestId {
        prefix: format!("req-{:08x}", rand::random::<u32>()),
        counter: Default::default(),
    };
    Router::new()
        .route("/v1/events", axum::routing::post(events::post_events))
        .route("/v1/events/{event_id}", get(events::get_event))
        .route("/v1/users/{user_id}", get(users::get_user).put(users::put_user))
        .route("/v1/templates", get(templates::list_templates))
        .route("/v1/wechat/templates/sync", axum::routing::post(templates::sync))
        .route("/v1/templates/{template_id}", get(templates::get_template).put(templates::put_template))
        .route("/v1/templates/{template_id}/check", axum::routing::post(templates::check_data))
        .route("/v1/subscriptions", axum::routing::post(subscriptions::post_subscriptions))
        .route("/v1/users/{user_id}/subscriptions", get(subscriptions::get_user_subscriptions))
        .route("/v1/points/transactions", axum::routing::post(points::post_transaction))
        .route(
            "/v1/points/transactions/{transaction_id}/reverse",
            axum::routing::post(points::reverse_transaction),
        )
        .route("/v1/points/holds", axum::routing::post(points::post_hold))
        .route("/v1/loyalty/liability", get(liability::get_liability))
        .route("/v1/rewards", get(mall::list_rewards))
        .route("/v1/rewards/{reward_key}", get(mall::get_reward).put(mall::put_reward))
        .route("/v1/rewards/{reward_key}/codes", axum::routing::post(mall::add_codes))
        .route("/v1/rewards/{reward_key}/stock", axum::routing::post(mall::restock))
        .route("/v1/redemptions", axum::routing::post(mall::redeem))
        .route("/v1/redemptions/{redemption_id}", get(mall::get_redemption))
        .route(
            "/v1/redemptions/{redemption_id}/cancel",
            axum::routing::post(mall::cancel_redemption),
        )
        .route(
            "/v1/redemptions/{redemption_id}/fulfil",
            axum::routing::post(mall::fulfil_redemption),
        )
        .route("/v1/tiers", get(tiers::get_tiers).put(tiers::put_tiers))
        .route("/v1/loyalty/rules", get(earning::list_rules))
        .route(
            "/v1/loyalty/rules/{rule_key}",
            axum::routing::put(earning::put_rule).delete(earning::delete_rule),
        )
        .route("/v1/loyalty/tasks", get(earning::list_tasks))
        .route(
            "/v1/loyalty/tasks/{task_key}",
            axum::routing::put(earning::put_task).delete(earning::delete_task),
        )
        .route("/v1/loyalty/sign-in", get(earning::get_sign_in).put(earning::put_sign_in))
        .route("/v1/users/{user_id}/sign-in", axum::routing::post(earning::post_sign_in))
        .route("/v1/users/{user_id}/tasks", get(earning::get_user_tasks))
        .route("/v1/users/{user_id}/tier", get(tiers::get_membership))
        .route("/v1/users/{user_id}/growth", axum::routing::post(tiers::post_growth))
        .route(
            "/v1/points/holds/{transaction_id}/capture",
            axum::routing::post(points::capture_hold),
        )
        .route(
            "/v1/points/holds/{transaction_id}/release",
            axum::routing::post(points::release_hold),
        )
        .route("/v1/points/settings", get(points::get_settings).put(points::put_settings))
        .route("/v1/users/{user_id}/points", get(points::get_points))
        .route("/v1/users/{user_id}/points/history", get(points::get_history))
        .route("/v1/messages", axum::routing::post(messages::post_message))
        .route("/v1/messages/{message_id}", get(messages::get_message))
        .route("/v1/wechat/settings", get(wechat::get_settings).put(wechat::put_settings))
        .route("/v1/analytics/active", get(analytics::get_active))
        .route("/v1/analytics/retention", get(analytics::get_retention))
        .route("/v1/analytics/lifecycle", get(analytics::get_lifecycle))
        .route("/v1/analytics/one-and-done", get(analytics::get_one_and_done))
        .route("/v1/analytics/funnel", get(analytics::get_funnel))
        .route("/v1/analytics/settings", get(analytics::get_settings).put(analytics::put_settings))
        .route("/wechat/{app_id}/callback", get(callback::verify_url).post(callback::receive))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/", get(home::home))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), make_id))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                }))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred").into_response()
                }))
                .layer(axum::middleware::from_fn_with_state(state.clone(), track_requests))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took too long and was abandoned; nothing was written, retry it",
                    )
                }))
                .timeout(REQUEST_TIMEOUT),
        )
        .with_state(state)
}
