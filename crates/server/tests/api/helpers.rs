//! `spawn_app`: a real server on a free port over a fresh store, plus typed request helpers.

use huiliu_domain::apps::NewApp;
use huiliu_domain::time::AppTimeZone;
use huiliu_server::AnyStore;
use huiliu_store::{AppRecord, Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares one test per backend: `both_stores!(async fn name(app: TestApp) { … })`.
#[macro_export]
macro_rules! both_stores {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($app: TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = spawn_app(Backend::Sqlite, "Asia/Shanghai").await {
                        body(app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = spawn_app(Backend::Postgres, "Asia/Shanghai").await {
                        body(app).await;
                    }
                }
            }
        )*
    };
}

pub struct TestApp {
    pub base: String,
    /// The store's database URL, for tests that check results with their own SQL.
    pub url: String,
    pub client: reqwest::Client,
    pub store: AnyStore,
    pub app: AppRecord,
    pub secret_key: String,
    pub publishable_key: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn store_url(backend: Backend, dir: &tempfile::TempDir) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.path().join("api.db").display())),
        Backend::Postgres => huiliu_store::testdb::fresh_postgres_url().await,
    }
}

/// Starts a server over a fresh store with one app; `None` when the backend is unavailable and optional.
pub async fn spawn_app(backend: Backend, timezone: &str) -> Option<TestApp> {
    spawn_app_with(backend, timezone, |_| {}).await
}

/// [`spawn_app`] with the server's state adjusted first (e.g. dispatch settings).
pub async fn spawn_app_with(
    backend: Backend,
    timezone: &str,
    configure: impl FnOnce(&mut huiliu_server::AppState),
) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(backend, &dir).await?;
    let store = huiliu_server::open_store(&url).await.unwrap();
    let plan = NewApp::generate(
        "test app",
        AppTimeZone::parse(timezone).unwrap(),
        &mut rand::rng(),
    )
    .unwrap();
    let app = store.create_app(&plan).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let mut state = huiliu_server::AppState::new(store.clone());
    configure(&mut state);
    tokio::spawn(huiliu_server::serve_with(
        state,
        listener,
        None,
        shutdown.clone(),
    ));
    Some(TestApp {
        base,
        url,
        client: reqwest::Client::new(),
        store,
        app,
        secret_key: plan.secret_key.plaintext,
        publishable_key: plan.publishable_key.plaintext,
        shutdown,
        _dir: dir,
    })
}

impl TestApp {
    /// A second app in the same store, with its secret key.
    pub async fn other_app(&self) -> (AppRecord, String) {
        let plan = NewApp::generate("other", AppTimeZone::default(), &mut rand::rng()).unwrap();
        let app = self.store.create_app(&plan).await.unwrap();
        (app, plan.secret_key.plaintext)
    }

    /// Any request with a bearer key and a body; the answer's status and JSON (`Null` if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_events_raw(&self, key: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/v1/events", key, body)
            .await
    }

    pub async fn post_events(&self, events: Value) -> (u16, Value) {
        self.post_events_raw(
            &self.secret_key.clone(),
            serde_json::json!({ "events": events }).to_string(),
        )
        .await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn put_user(&self, user_id: &str, body: &str) -> (u16, Value) {
        let path = format!("/v1/users/{user_id}");
        self.call(
            reqwest::Method::PUT,
            &path,
            &self.secret_key,
            body.to_string(),
        )
        .await
    }

    pub async fn stored_events(&self) -> u64 {
        self.store.count_events(&self.app).await.unwrap()
    }
}

/// An event dated an hour ago, so it is always inside the accepted window.
pub fn event(id: &str, user: &str) -> Value {
    let time = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    serde_json::json!({"id": id, "user_id": user, "name": "launch", "time": time.to_string(), "props": {"scene": 1001}})
}
