//! The outbox worker: claims due messages, sends them to WeChat outside any
//! transaction, and records each outcome with its credit movement.
//!
//! Every node runs the same loop against the shared store; the claim decides who
//! sends what (leases, one in-flight send per user), so nodes need not know of
//! each other. A node that dies mid-send leaves its messages `sending` until the
//! lease runs out; the next claim turns them into unknown outcomes, which are
//! never resent (see `huiliu_domain::messages::Verdict::Unknown`).

use crate::metrics::Metrics;
use crate::wechat_settings;
use crate::wechat_token::{is_token_error, TokenKeeper};
use crate::AnyStore;
use futures_util::stream::{self, StreamExt};
use huiliu_domain::messages::{backoff, judge, Attempt, Verdict};
use huiliu_domain::secrets::MasterKey;
use huiliu_domain::time::to_micros;
use huiliu_domain::wechat::WechatSettings;
use huiliu_store::messages::{ClaimRequest, ClaimedMessage, Finished, Outcome};
use huiliu_store::{AppRecord, Store};
use huiliu_wechat::client::WechatHttp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How a node dispatches.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Off: this node accepts messages but never sends (another node does).
    pub enabled: bool,
    /// This node's name in leases; unique per process.
    pub node_id: String,
    /// Concurrent claim-send-record loops.
    pub workers: usize,
    /// Messages one claim takes.
    pub batch: u32,
    /// Sends in flight per loop.
    pub concurrency: usize,
    /// A claim's lease: past it, a send without a recorded outcome is unknown.
    pub lease: Duration,
    /// How long an unknown outcome waits for a sent event before it fails.
    pub reconcile: Duration,
    /// How often an idle loop looks for due messages (a message accepted by this
    /// node wakes it at once).
    pub idle_poll: Duration,
    /// Which WeChat API issues access tokens.
    pub token_api: crate::wechat_token::TokenApi,
    /// How long a send waits after 45009 (the daily quota is spent; an operator
    /// may reset it with clear_quota, so huiliu keeps trying at this pace).
    pub quota_backoff: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            node_id: format!("node-{}-{:08x}", std::process::id(), rand::random::<u32>()),
            workers: 2,
            batch: 256,
            concurrency: 128,
            lease: Duration::from_secs(60),
            reconcile: Duration::from_secs(600),
            idle_poll: Duration::from_millis(250),
            token_api: Default::default(),
            quota_backoff: huiliu_domain::messages::QUOTA_BACKOFF,
        }
    }
}

/// How long a woken loop waits for more messages before claiming.
const GATHER: Duration = Duration::from_millis(10);

/// Settings are re-read this often, so a changed secret or API base applies soon.
const SETTINGS_TTL: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    store: AnyStore,
    config: DispatchConfig,
    key: Arc<MasterKey>,
    tokens: TokenKeeper<AnyStore>,
    wechat: WechatHttp,
    default_base: String,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    apps: Mutex<HashMap<i64, AppRecord>>,
    settings: Mutex<HashMap<i64, (Arc<WechatSettings>, Instant)>>,
}

fn now_us() -> i64 {
    to_micros(jiff::Timestamp::now())
}

impl Dispatcher {
    pub fn new(
        store: AnyStore,
        config: DispatchConfig,
        key: Arc<MasterKey>,
        default_base: String,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        let mut tokens = TokenKeeper::new(
            store.clone(),
            key.clone(),
            config.node_id.clone(),
            default_base.clone(),
        );
        tokens.api = config.token_api;
        Self {
            tokens,
            store,
            config,
            key,
            wechat: WechatHttp::default(),
            default_base,
            metrics,
            wake,
            apps: Mutex::default(),
            settings: Mutex::default(),
        }
    }

    /// Runs the loops until `shutdown`; a loop finishes the batch it holds first.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let loops: Vec<_> = (0..self.config.workers.max(1))
            .map(|_| tokio::spawn(self.clone().work(shutdown.clone())))
            .collect();
        for task in loops {
            let _ = task.await;
        }
    }

    async fn work(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let claimed = match self.claim().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "claiming messages failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    // Let a burst gather: one claim of many messages costs about
                    // what a claim of one does.
                    _ = self.wake.notified() => tokio::time::sleep(GATHER).await,
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            self.send_batch(claimed).await;
        }
    }

    /// One claim of due messages for this node.
    pub async fn claim(&self) -> huiliu_store::StoreResult<Vec<ClaimedMessage>> {
        let now = now_us();
        self.store
            .claim_messages(&ClaimRequest {
                holder: self.config.node_id.clone(),
                now_us: now,
                lease_until_us: now + self.config.lease.as_micros() as i64,
                reconcile_us: self.config.reconcile.as_micros() as i64,
                limit: self.config.batch,
            })
            .await
    }

    /// Sends claimed messages and records their outcomes in one transaction.
    pub async fn send_batch(&self, claimed: Vec<ClaimedMessage>) {
        let finished: Vec<Finished> = stream::iter(claimed)
            .map(|message| self.send(message))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        // If recording fails the leases run out and the outcomes become unknown:
        // nothing is resent. A few tries first, since every send here happened.
        for attempt in 1..=5u32 {
            match self
                .store
                .finish_messages(&self.config.node_id, now_us(), &finished)
                .await
            {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, attempt, "recording send outcomes failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        tracing::error!(
            messages = finished.len(),
            "send outcomes could not be recorded; they become unknown when their leases end"
        );
    }

    async fn app(&self, key: i64) -> Option<AppRecord> {
        if let Some(app) = self.apps.lock().expect("apps lock").get(&key) {
            return Some(app.clone());
        }
        let apps = self.store.list_apps().await.ok()?;
        let mut known = self.apps.lock().expect("apps lock");
        for app in apps {
            known.insert(app.store_key, app);
        }
        known.get(&key).cloned()
    }

    async fn settings(&self, app: &AppRecord) -> Result<Arc<WechatSettings>, String> {
        if let Some((settings, read)) = self
            .settings
            .lock()
            .expect("settings lock")
            .get(&app.store_key)
        {
            if read.elapsed() < SETTINGS_TTL {
                return Ok(settings.clone());
            }
        }
        let stored = self
            .store
            .get_wechat_settings(app)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the app has no WeChat settings")?;
        let settings =
            Arc::new(wechat_settings::open(&self.key, app, &stored).map_err(|e| e.to_string())?);
        self.settings
            .lock()
            .expect("settings lock")
            .insert(app.store_key, (settings.clone(), Instant::now()));
        Ok(settings)
    }

    /// One attempt at one message: token (refreshed once if WeChat refuses it), send, verdict.
    async fn send(&self, message: ClaimedMessage) -> Finished {
        let attempt = self.attempt(&message).await;
        let verdict = judge(&attempt, message.attempts);
        let (errcode, errmsg) = match &attempt {
            Attempt::Sent { .. } => (None, String::new()),
            Attempt::Refused { errcode, errmsg } => (Some(*errcode), errmsg.clone()),
            Attempt::NotSent { reason } | Attempt::NoAnswer { reason } => (None, reason.clone()),
        };
        let outcome = match verdict {
            Verdict::Sent { msgid } => {
                self.metrics.count_send("sent");
                Outcome::Sent { msgid }
            }
            Verdict::Retry { mut after } => {
                self.metrics.count_send("retry");
                if errcode == Some(45009) {
                    after = backoff(message.attempts).max(self.config.quota_backoff);
                }
                Outcome::Retry {
                    at_us: now_us() + after.as_micros() as i64,
                    errcode,
                    errmsg,
                }
            }
            Verdict::Fail {
                zero_credits,
                disable_template,
            } => {
                self.metrics.count_send("failed");
                if disable_template {
                    self.metrics.raise_alert("template_disabled");
                    tracing::error!(
                        template_id = %message.template_id,
                        "WeChat banned this subscription-message template (43107); it is disabled until an operator re-enables it"
                    );
                }
                Outcome::Failed {
                    errcode,
                    errmsg,
                    zero_credits,
                    disable_template,
                }
            }
            Verdict::Unknown => {
                self.metrics.count_send("unknown");
                Outcome::Unknown {
                    until_us: now_us() + self.config.reconcile.as_micros() as i64,
                    errmsg,
                }
            }
        };
        Finished {
            id: message.id,
            outcome,
        }
    }

    async fn attempt(&self, message: &ClaimedMessage) -> Attempt {
        let not_sent = |reason: String| Attempt::NotSent { reason };
        let Some(app) = self.app(message.app_key).await else {
            return not_sent("the message's app is gone".into());
        };
        let settings = match self.settings(&app).await {
            Ok(settings) => settings,
            Err(reason) => return not_sent(reason),
        };
        let data: Value = match serde_json::from_str(&message.data) {
            Ok(data) => data,
            Err(e) => return not_sent(format!("stored data is not JSON: {e}")),
        };
        let mut body = json!({
            "touser": message.openid,
            "template_id": message.template_id,
            "data": data,
        });
        if let Some(page) = &message.page {
            body["page"] = Value::String(page.clone());
        }
        let base = settings.api_base.as_deref().unwrap_or(&self.default_base);
        let sent = self
            .tokens
            .with_token(
                &app,
                &settings,
                |attempt| matches!(attempt, Attempt::Refused { errcode, .. } if is_token_error(*errcode)),
                |token| {
                    let body = &body;
                    async move { self.wechat.send_subscribe(base, &token, body).await }
                },
            )
            .await;
        sent.unwrap_or_else(|e| not_sent(format!("no access token: {e}")))
    }
}
