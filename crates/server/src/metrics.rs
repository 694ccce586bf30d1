//! Prometheus metrics, served on their own listener so they are never public by accident.

use crate::ingest::BatchReport;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use huiliu_domain::events::EventSource;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric huiliu exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    events: Family<EventLabels, Counter>,
    store_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
    sends: Family<OutcomeLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("huiliu");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let events = Family::<EventLabels, Counter>::default();
        let store_seconds =
            Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "http_requests",
            "HTTP requests by matched route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by matched route",
            request_seconds.clone(),
        );
        registry.register(
            "events",
            "Events received, by source and outcome (accepted, duplicate, rejected)",
            events.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store call latency by operation",
            store_seconds.clone(),
        );
        let sends = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "message_sends",
            "Subscription-message send attempts by outcome (sent, retry, failed, unknown)",
            sends.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts",
            "Conditions an operator must act on, by kind (e.g. template_disabled after 43107)",
            alerts.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            events,
            store_seconds,
            sends,
            alerts,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Runs a store call and records how long it took.
    pub async fn time_store<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.store_seconds
            .get_or_create(&StoreLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    pub fn count_send(&self, outcome: &'static str) {
        self.sends.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn raise_alert(&self, kind: &'static str) {
        self.alerts.get_or_create(&AlertLabels { kind }).inc();
    }

    pub fn count_events(&self, source: EventSource, report: &BatchReport) {
        let source = source.as_str();
        for (outcome, n) in [
            ("accepted", report.accepted),
            ("duplicate", report.duplicates),
            ("rejected", report.rejected.len()),
        ] {
            self.events
                .get_or_create(&EventLabels { source, outcome })
                .inc_by(n as u64);
        }
    }
}

/// Counts and times every request under its matched route (never the raw path,
/// which would carry user ids and explode the label set).
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
