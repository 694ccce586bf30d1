//! huiliu's server: the HTTP API over a store, its metrics and its lifecycle.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod api;
pub mod awards;
mod background;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
pub mod points_sweep;
mod store_select;
pub mod ttl_cache;
pub mod wechat_settings;
pub mod wechat_token;

pub use store_select::{backend_of, open_store, AnyStore, ACCEPTED_URLS};

use huiliu_store::Store;
use metrics::Metrics;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: AnyStore,
    pub metrics: Arc<Metrics>,
    /// This node's in-memory activity indexes, by app.
    pub activity: analytics::ActivityCache,
    /// The app whose headline numbers `/` shows (the demo); `None` on a normal server.
    pub home_app: Option<huiliu_store::AppRecord>,
    /// Seals and opens the apps' WeChat secrets.
    pub master_key: Arc<huiliu_domain::secrets::MasterKey>,
    /// WeChat's API base for apps that do not set their own.
    pub wechat_api_base: String,
    /// How this node sends messages.
    pub dispatch: dispatch::DispatchConfig,
    /// Wakes this node's dispatch loops when a message is accepted.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// Key records this node read lately.
    pub keys: Arc<api::auth::KeyCache>,
    /// How often this node writes what time decided in the points ledger.
    pub points_sweep_every: std::time::Duration,
    /// Wakes this node's loop that judges trusted events against earning rules.
    pub awards_wake: Arc<tokio::sync::Notify>,
    /// Apps' points policies this node read lately (5 s; a change made on this
    /// node is seen at once, on others within 5 s).
    pub points_policies: Arc<ttl_cache::TtlCache<i64, huiliu_store::points::PointsPolicy>>,
}

impl AppState {
    pub fn new(store: AnyStore) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::default()),
            activity: analytics::ActivityCache::default(),
            home_app: None,
            // A server started by `huiliu serve` is given its configured key; a
            // random one serves tests and benchmarks, whose stores are thrown away.
            master_key: Arc::new(huiliu_domain::secrets::MasterKey::from_bytes(rand::random())),
            wechat_api_base: "https://api.weixin.qq.com".into(),
            dispatch: dispatch::DispatchConfig::default(),
            outbox_wake: Arc::default(),
            keys: Arc::default(),
            points_sweep_every: points_sweep::DEFAULT_EVERY,
            awards_wake: Arc::default(),
            points_policies: Arc::new(ttl_cache::TtlCache::new(
                std::time::Duration::from_secs(5),
                10_000,
            )),
        }
    }
}

/// Serves the API (and metrics, when a listener is given) until `shutdown` is
/// cancelled; then stops accepting, lets in-flight requests finish (a batch being
/// committed completes and is answered) and closes the store.
pub async fn serve(
    store: AnyStore,
    api_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(
        AppState::new(store),
        api_listener,
        metrics_listener,
        shutdown,
    )
    .await
}

/// [`serve`] with a prepared state (e.g. the demo's home app).
pub async fn serve_with(
    state: AppState,
    api_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let store = state.store.clone();
    let metrics_task = metrics_listener.map(|listener| {
        let metrics = state.metrics.clone();
        let shutdown = shutdown.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        })
    });
    let compaction = tokio::spawn(analytics::run_compaction(store.clone(), shutdown.clone()));
    let awarding = tokio::spawn(awards::run(
        store.clone(),
        state.awards_wake.clone(),
        shutdown.clone(),
    ));
    let sweeping = tokio::spawn(points_sweep::run(
        store.clone(),
        state.points_sweep_every,
        shutdown.clone(),
    ));
    // Sends stop with the HTTP side: in-flight batches are sent and recorded first.
    let dispatching = state.dispatch.enabled.then(|| {
        let dispatcher = Arc::new(dispatch::Dispatcher::new(
            store.clone(),
            state.dispatch.clone(),
            state.master_key.clone(),
            state.wechat_api_base.clone(),
            state.metrics.clone(),
            state.outbox_wake.clone(),
        ));
        tokio::spawn(dispatcher.run(shutdown.clone()))
    });
    axum::serve(api_listener, api::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    if let Some(task) = dispatching {
        let _ = task.await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let _ = compaction.await;
    let _ = sweeping.await;
    let _ = awarding.await;
    store.close().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), cancelling `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("interrupt received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
    token.cancel();
}
