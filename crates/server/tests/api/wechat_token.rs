//! The access token is fetched once and shared by every node; a refused token is
//! forgotten only if it is still the cached one.

use crate::both_stores;
use crate::helpers::*;
use huiliu_domain::secrets::MasterKey;
use huiliu_domain::wechat::WechatSettings;
use huiliu_server::wechat_token::{TokenApi, TokenKeeper};
use huiliu_wechat::fake::{FakeWechat, TokenPolicy};
use std::sync::Arc;
use std::time::Duration;

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

async fn setup(app: &TestApp, policy: TokenPolicy) -> (FakeWechat, WechatSettings, Arc<MasterKey>) {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, policy)
        .await
        .unwrap();
    let settings = WechatSettings::new(
        APPID.into(),
        SECRET.into(),
        None,
        None,
        Some(fake.base_url()),
    )
    .unwrap();
    let _ = app;
    (fake, settings, Arc::new(MasterKey::from_bytes([5; 32])))
}

both_stores! {
    async fn two_nodes_share_one_token_fetched_once(app: TestApp) {
        let (fake, settings, key) = setup(&app, TokenPolicy::default()).await;
        let nodes: Vec<Arc<TokenKeeper<_>>> = ["node-a", "node-b"]
            .iter()
            .map(|n| Arc::new(TokenKeeper::new(app.store.clone(), key.clone(), n.to_string(), "http://unused".into())))
            .collect();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (node, record, settings) = (nodes[i % 2].clone(), app.app.clone(), settings.clone());
            tasks.push(tokio::spawn(async move { node.token(&record, &settings).await.unwrap().token }));
        }
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.push(task.await.unwrap());
        }
        tokens.dedup();
        assert_eq!(tokens.len(), 1, "every caller got the same token");
        assert_eq!(fake.tokens_issued(), 1, "one fetch from WeChat");
        // At rest the token is sealed.
        let stored = huiliu_store::Store::wechat_token(&app.store, &app.app).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&stored.token_sealed).contains(&tokens[0]));
    }

    async fn a_refused_token_is_forgotten_only_if_still_cached(app: TestApp) {
        let (fake, settings, key) = setup(&app, TokenPolicy::default()).await;
        let a = TokenKeeper::new(app.store.clone(), key.clone(), "node-a".into(), "http://unused".into());
        let b = TokenKeeper::new(app.store.clone(), key, "node-b".into(), "http://unused".into());
        let first = a.token(&app.app, &settings).await.unwrap();
        // WeChat stops honouring it; node A notices first and forgets it.
        fake.expire_token();
        assert!(a.refused(&app.app, &first).await.unwrap());
        let second = b.token(&app.app, &settings).await.unwrap();
        assert_ne!(second.token, first.token);
        // Node B, still holding the first token, reports it late: the new one stays.
        assert!(!b.refused(&app.app, &first).await.unwrap());
        assert_eq!(a.token(&app.app, &settings).await.unwrap(), second);
        assert_eq!(fake.tokens_issued(), 2);
    }

    async fn a_token_close_to_expiry_is_refreshed_once(app: TestApp) {
        let policy = TokenPolicy { lifetime: Duration::from_secs(3), grace: Duration::from_secs(2) };
        let (fake, settings, key) = setup(&app, policy).await;
        let mut keeper = TokenKeeper::new(app.store.clone(), key, "node-a".into(), "http://unused".into());
        keeper.refresh_margin = Duration::from_secs(2);
        let first = keeper.token(&app.app, &settings).await.unwrap();
        assert_eq!(keeper.token(&app.app, &settings).await.unwrap(), first, "cached while fresh");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let renewed = keeper.token(&app.app, &settings).await.unwrap();
        assert_ne!(renewed, first, "renewed within the margin");
        assert_eq!(keeper.token(&app.app, &settings).await.unwrap(), renewed);
        assert_eq!(fake.tokens_issued(), 2);
    }

    async fn the_classic_token_api_can_be_chosen(app: TestApp) {
        let (fake, settings, key) = setup(&app, TokenPolicy::default()).await;
        let mut keeper = TokenKeeper::new(app.store.clone(), key, "node-a".into(), "http://unused".into());
        keeper.api = TokenApi::Classic;
        let first = keeper.token(&app.app, &settings).await.unwrap();
        assert!(first.token.starts_with("FAKE_"));
        assert_eq!(keeper.token(&app.app, &settings).await.unwrap(), first, "cached, not fetched again");
        assert_eq!(fake.tokens_issued(), 1);
    }
}
