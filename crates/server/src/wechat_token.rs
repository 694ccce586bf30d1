//! Each app's WeChat access token, shared by every node through the store.
//!
//! WeChat wants one place to fetch and refresh a token: two nodes refreshing on
//! their own would invalidate each other's. So a node uses the cached token while
//! it has more than [`TokenKeeper::refresh_margin`] left; otherwise it takes a lease
//! in the store and fetches (stable_token, normal mode), while the others keep
//! using the old token or wait for the new one. A token WeChat refuses (40001,
//! 40014, 42001) is forgotten only if it is still the cached one: another node
//! may have replaced it already.

use huiliu_domain::secrets::MasterKey;
use huiliu_domain::time::to_micros;
use huiliu_domain::wechat::WechatSettings;
use huiliu_store::{AppRecord, Store, StoreError, StoredToken};
use huiliu_wechat::client::{WechatError, WechatHttp};
use std::sync::Arc;
use std::time::Duration;

/// How long a node may take to fetch a token before another may try.
const LEASE: Duration = Duration::from_secs(30);
/// How long a node reuses a token it read without looking at the store again
/// (WeChat suggests workers cache the central token about a minute; a replaced
/// token stays valid 5 minutes).
const MEMO: Duration = Duration::from_secs(60);
/// How long a node waits between looks while another node refreshes.
const POLL: Duration = Duration::from_millis(50);

/// Whether an errcode means the token itself was refused.
pub fn is_token_error(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wechat(#[from] WechatError),
    #[error("the cached WeChat token cannot be opened with this master key")]
    Sealed,
    #[error("no WeChat token: another node holds the refresh lease and has not stored one yet")]
    Busy,
}

/// A token and its sealed form as cached (to forget exactly this one later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    sealed: Vec<u8>,
}

/// Which WeChat API issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenApi {
    /// `POST /cgi-bin/stable_token`, normal mode: repeated calls return the live
    /// token, so other systems using the same AppID are not disturbed.
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: each call replaces the token.
    Classic,
}

impl TokenApi {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "stable" => Some(Self::Stable),
            "classic" => Some(Self::Classic),
            _ => None,
        }
    }
}

pub struct TokenKeeper<S> {
    store: S,
    key: Arc<MasterKey>,
    /// This node's name in leases.
    holder: String,
    wechat: WechatHttp,
    /// The server's WeChat API base, unless an app sets its own.
    default_base: String,
    /// Refresh when less than this is left (WeChat renews 5 minutes before expiry).
    pub refresh_margin: Duration,
    pub api: TokenApi,
    /// Tokens this node read lately, by app: the token, its expiry, when read.
    memo: std::sync::Mutex<std::collections::HashMap<i64, (AccessToken, i64, std::time::Instant)>>,
}

fn context(app: &AppRecord) -> String {
    format!("{}/wechat/access_token", app.id)
}

impl<S: Store> TokenKeeper<S> {
    pub fn new(store: S, key: Arc<MasterKey>, holder: String, default_base: String) -> Self {
        Self {
            store,
            key,
            holder,
            wechat: WechatHttp::default(),
            default_base,
            refresh_margin: Duration::from_secs(300),
            api: TokenApi::default(),
            memo: Default::default(),
        }
    }

    fn open(&self, app: &AppRecord, cached: &StoredToken) -> Result<AccessToken, TokenError> {
        let token = self
            .key
            .open(&cached.token_sealed, &context(app))
            .map_err(|_| TokenError::Sealed)?;
        let token = AccessToken {
            token,
            sealed: cached.token_sealed.clone(),
        };
        self.remember(app, &token, cached.expires_us);
        Ok(token)
    }

    fn memo(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<i64, (AccessToken, i64, std::time::Instant)>,
    > {
        self.memo
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, app: &AppRecord, token: &AccessToken, expires_us: i64) {
        self.memo().insert(
            app.store_key,
            (token.clone(), expires_us, std::time::Instant::now()),
        );
    }

    /// A token for the app, fetched from WeChat only when the cached one is missing
    /// or close to expiry, by one node at a time.
    pub async fn token(
        &self,
        app: &AppRecord,
        settings: &WechatSettings,
    ) -> Result<AccessToken, TokenError> {
        let margin = self.refresh_margin.as_micros() as i64;
        let now = to_micros(jiff::Timestamp::now());
        if let Some((token, expires_us, read)) = self.memo().get(&app.store_key) {
            if read.elapsed() < MEMO && expires_us - margin > now {
                return Ok(token.clone());
            }
        }
        for _ in 0..(LEASE.as_millis() / POLL.as_millis()) {
            let now = to_micros(jiff::Timestamp::now());
            let cached = self.store.wechat_token(app).await?;
            if let Some(cached) = &cached {
                if cached.expires_us - margin > now {
                    return self.open(app, cached);
                }
            }
            let until = now + LEASE.as_micros() as i64;
            if self
                .store
                .lease_wechat_token(app, &self.holder, now, until)
                .await?
            {
                let base = settings.api_base.as_deref().unwrap_or(&self.default_base);
                let (token, expires_in) = match self.api {
                    TokenApi::Stable => {
                        self.wechat
                            .stable_token(base, &settings.appid, &settings.secret)
                            .await?
                    }
                    TokenApi::Classic => {
                        self.wechat
                            .classic_token(base, &settings.appid, &settings.secret)
                            .await?
                    }
                };
                let sealed = self.key.seal(&token, &context(app), rand::random());
                let fresh = StoredToken {
                    token_sealed: sealed.clone(),
                    expires_us: to_micros(jiff::Timestamp::now()) + expires_in as i64 * 1_000_000,
                };
                self.store
                    .put_wechat_token(app, &self.holder, &fresh)
                    .await?;
                let token = AccessToken { token, sealed };
                self.remember(app, &token, fresh.expires_us);
                return Ok(token);
            }
            // Another node is refreshing: the old token is still good until it expires.
            if let Some(cached) = cached.filter(|c| c.expires_us > now) {
                return self.open(app, &cached);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(TokenError::Busy)
    }

    /// WeChat refused `failing`: forget it if it is still the cached token. True
    /// when forgotten (the next [`TokenKeeper::token`] fetches a new one).
    pub async fn refused(
        &self,
        app: &AppRecord,
        failing: &AccessToken,
    ) -> Result<bool, TokenError> {
        {
            let mut memo = self.memo();
            if memo
                .get(&app.store_key)
                .is_some_and(|(token, _, _)| token == failing)
            {
                memo.remove(&app.store_key);
            }
        }
        Ok(self.store.drop_wechat_token(app, &failing.sealed).await?)
    }

    /// Calls WeChat with the app's token; when the answer says the token was
    /// refused (`refused`), forgets it (if still cached) and calls once more with
    /// whatever token is current then. Never more than one retry.
    pub async fn with_token<T, F, Fut>(
        &self,
        app: &AppRecord,
        settings: &WechatSettings,
        refused: impl Fn(&T) -> bool,
        call: F,
    ) -> Result<T, TokenError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let token = self.token(app, settings).await?;
        let answer = call(token.token.clone()).await;
        if !refused(&answer) {
            return Ok(answer);
        }
        if let Err(e) = self.refused(app, &token).await {
            tracing::warn!(error = %e, "forgetting a refused token failed");
        }
        let token = self.token(app, settings).await?;
        Ok(call(token.token).await)
    }
}
