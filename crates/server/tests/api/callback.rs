//! WeChat's message push: URL check, signatures, safe mode, XML and JSON bodies,
//! credits from popup and settings events (an acceptance reported by both paths
//! counts once), and sent events settling unknown outcomes.

use crate::both_stores;
use crate::helpers::*;
use huiliu_domain::templates::Template;
use huiliu_domain::wechat_push::{encrypt, signature};
use huiliu_wechat::fake::{FakeWechat, Fault, TokenPolicy};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";
const TOKEN: &str = "huiliuPushToken1";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

async fn configure(app: &TestApp, api_base: Option<String>) {
    let settings = json!({"appid": APPID, "secret": SECRET, "token": TOKEN, "aes_key": AES_KEY, "api_base": api_base});
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            "/v1/wechat/settings",
            &app.secret_key,
            settings.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (id, kind) in [("tmpl-a", "one_time"), ("tmpl-b", "one_time")] {
        let template =
            json!({"title": "通知", "kind": kind, "fields": [{"key": "thing1", "name": "内容"}]});
        let (status, _) = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/templates/{id}"),
                &app.secret_key,
                template.to_string(),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = app.put_user("u1", r#"{"openid": "oUser1"}"#).await;
    assert!(status == 200 || status == 201);
}

fn callback(app: &TestApp) -> String {
    format!("{}/wechat/{}/callback", app.base, app.app.id)
}

/// Posts a push: plaintext, or sealed in safe mode; returns status and body text.
async fn push(app: &TestApp, body: &str, safe: bool) -> (u16, String) {
    let (timestamp, nonce) = ("1795000000", format!("n{}", rand::random::<u32>()));
    let mut url = format!(
        "{}?signature={}&timestamp={timestamp}&nonce={nonce}",
        callback(app),
        signature(&[TOKEN, timestamp, &nonce])
    );
    let body = if safe {
        let sealed = encrypt(AES_KEY, body, APPID, rand::random()).unwrap();
        url.push_str(&format!(
            "&encrypt_type=aes&msg_signature={}",
            signature(&[TOKEN, timestamp, &nonce, &sealed])
        ));
        format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{sealed}]]></Encrypt></xml>")
    } else {
        body.to_string()
    };
    let response = app.client.post(url).body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn popup_xml(openid: &str, create_time: u64, answers: &[(&str, &str)]) -> String {
    let items: String = answers
        .iter()
        .map(|(t, a)| format!("<List><TemplateId><![CDATA[{t}]]></TemplateId><SubscribeStatusString><![CDATA[{a}]]></SubscribeStatusString><PopupScene>0</PopupScene></List>"))
        .collect();
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent>{items}</SubscribeMsgPopupEvent></xml>")
}

async fn credits(app: &TestApp, template: &str) -> u64 {
    let (_, view) = app
        .get("/v1/users/u1/subscriptions", Some(&app.secret_key))
        .await;
    view["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["template_id"] == template)
        .map_or(0, |t| t["credits"].as_u64().unwrap())
}

both_stores! {
    async fn the_push_url_check_answers_echostr_only_with_a_valid_signature(app: TestApp) {
        configure(&app, None).await;
        let good = format!("{}?signature={}&timestamp=1&nonce=abc&echostr=hello", callback(&app), signature(&[TOKEN, "1", "abc"]));
        let response = app.client.get(&good).send().await.unwrap();
        assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (200, "hello".to_string()));
        let bad = format!("{}?signature=0000&timestamp=1&nonce=abc&echostr=hello", callback(&app));
        let response = app.client.get(&bad).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_signature");
        let unknown = format!("{}/wechat/app_0000000000000000/callback?signature=x&timestamp=1&nonce=a", app.base);
        assert_eq!(app.client.get(&unknown).send().await.unwrap().status().as_u16(), 404);
    }

    async fn popups_grant_credits_once_however_often_they_are_reported(app: TestApp) {
        configure(&app, None).await;
        // The company's backend reports the tap...
        let report = json!({"user_id": "u1", "results": {"tmpl-a": "accept"}});
        app.call(reqwest::Method::POST, "/v1/subscriptions", &app.secret_key, report.to_string()).await;
        assert_eq!(credits(&app, "tmpl-a").await, 1);
        // ...and WeChat pushes the same tap (safe mode, XML): still one credit.
        let first_tap = popup_xml("oUser1", 1_795_000_001, &[("tmpl-a", "accept"), ("tmpl-b", "reject")]);
        assert_eq!(push(&app, &first_tap, true).await, (200, "success".into()));
        assert_eq!(credits(&app, "tmpl-a").await, 1, "one tap, reported twice");
        // WeChat retries a push it thinks was lost: nothing new.
        assert_eq!(push(&app, &first_tap, true).await.0, 200);
        assert_eq!(credits(&app, "tmpl-a").await, 1);
        // A second tap reported only by WeChat (plaintext JSON, List as an array).
        let second_tap = json!({"ToUserName": "gh_1", "FromUserName": "oUser1", "CreateTime": 1_795_000_050, "MsgType": "event",
            "Event": "subscribe_msg_popup_event", "List": [{"TemplateId": "tmpl-a", "SubscribeStatusString": "accept", "PopupScene": "0"}]});
        assert_eq!(push(&app, &second_tap.to_string(), false).await.0, 200);
        assert_eq!(credits(&app, "tmpl-a").await, 2);
        // Then the backend's report of that second tap arrives: paired, still 2.
        let report = json!({"user_id": "u1", "results": {"tmpl-a": "accept"}, "idempotency_key": "tap-2"});
        app.call(reqwest::Method::POST, "/v1/subscriptions", &app.secret_key, report.to_string()).await;
        assert_eq!(credits(&app, "tmpl-a").await, 2);
        // A popup for an openid no user has, or an unknown template, is acknowledged.
        assert_eq!(push(&app, &popup_xml("oStranger", 1, &[("tmpl-a", "accept")]), false).await.0, 200);
        assert_eq!(push(&app, &popup_xml("oUser1", 2, &[("tmpl-none", "accept")]), false).await.0, 200);
        assert_eq!(credits(&app, "tmpl-a").await, 2);
    }

    async fn a_rejection_in_the_settings_ends_the_credits(app: TestApp) {
        configure(&app, None).await;
        for n in 0..3 {
            let tap = popup_xml("oUser1", 1_795_000_000 + n, &[("tmpl-a", "accept")]);
            push(&app, &tap, false).await;
        }
        assert_eq!(credits(&app, "tmpl-a").await, 3);
        let change = json!({"FromUserName": "oUser1", "CreateTime": 1_795_000_100, "MsgType": "event", "Event": "subscribe_msg_change_event",
            "List": {"TemplateId": "tmpl-a", "SubscribeStatusString": "reject"}});
        assert_eq!(push(&app, &change.to_string(), true).await.0, 200);
        assert_eq!(credits(&app, "tmpl-a").await, 0);
    }

    async fn bad_pushes_change_nothing(app: TestApp) {
        configure(&app, None).await;
        let tap = popup_xml("oUser1", 1_795_000_001, &[("tmpl-a", "accept")]);
        // Wrong signature.
        let url = format!("{}?signature=00&timestamp=1&nonce=n", callback(&app));
        assert_eq!(app.client.post(&url).body(tap.clone()).send().await.unwrap().status().as_u16(), 401);
        // Right signature, wrong msg_signature in safe mode.
        let sealed = encrypt(AES_KEY, &tap, APPID, [1; 16]).unwrap();
        let url = format!("{}?signature={}&timestamp=1&nonce=n&encrypt_type=aes&msg_signature=00", callback(&app), signature(&[TOKEN, "1", "n"]));
        let body = format!("<xml><Encrypt><![CDATA[{sealed}]]></Encrypt></xml>");
        assert_eq!(app.client.post(&url).body(body).send().await.unwrap().status().as_u16(), 401);
        // Sealed for another AppID.
        let (status, _) = push(&app, "<xml/>", false).await;
        assert_eq!(status, 200, "an empty event is acknowledged");
        let foreign = encrypt(AES_KEY, &tap, "wx0000000000000000", [1; 16]).unwrap();
        let url = format!(
            "{}?signature={}&timestamp=1&nonce=n&encrypt_type=aes&msg_signature={}",
            callback(&app), signature(&[TOKEN, "1", "n"]), signature(&[TOKEN, "1", "n", &foreign])
        );
        let body = format!("<xml><Encrypt><![CDATA[{foreign}]]></Encrypt></xml>");
        assert_eq!(app.client.post(&url).body(body).send().await.unwrap().status().as_u16(), 400);
        // Not XML or JSON.
        assert_eq!(push(&app, "<xml><unclosed></xml>", false).await.0, 400);
        assert_eq!(credits(&app, "tmpl-a").await, 0);
    }
}

fn slow_reconcile(state: &mut huiliu_server::AppState) {
    state.dispatch.lease = Duration::from_secs(3);
    state.dispatch.reconcile = Duration::from_secs(60);
    state.dispatch.idle_poll = Duration::from_millis(50);
}

async fn sent_event_settles(app: TestApp) {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, TokenPolicy::default())
        .await
        .unwrap();
    configure(&app, Some(fake.base_url())).await;
    let template =
        json!({"title": "通知", "kind": "one_time", "fields": [{"key": "thing1", "name": "内容"}]});
    fake.add_template(Template::parse("tmpl-a", &template).unwrap());
    for n in 0..2 {
        push(
            &app,
            &popup_xml("oUser1", 1_795_000_000 + n, &[("tmpl-a", "accept")]),
            false,
        )
        .await;
        fake.accept("oUser1", "tmpl-a");
    }
    fake.inject(Fault::DropAfterSend { times: 1 });
    let message = json!({"user_id": "u1", "template_id": "tmpl-a", "data": {"thing1": "到货"}, "idempotency_key": "k1"});
    let (_, accepted) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            &app.secret_key,
            message.to_string(),
        )
        .await;
    let id = accepted["id"].as_str().unwrap().to_string();
    // The answer was lost: huiliu waits (shown as sending, the credit held).
    let started = Instant::now();
    loop {
        let (_, view) = app
            .get(&format!("/v1/messages/{id}"), Some(&app.secret_key))
            .await;
        if view["attempts"] == 1 && view["status"] == "sending" && fake.sent().len() == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgid = fake.sent()[0].msgid.to_string();
    let sent = format!("<xml><FromUserName><![CDATA[oUser1]]></FromUserName><CreateTime>1795000200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event><SubscribeMsgSentEvent><List><TemplateId><![CDATA[tmpl-a]]></TemplateId><MsgID>{msgid}</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent></xml>");
    assert_eq!(push(&app, &sent, true).await.0, 200);
    let (_, view) = app
        .get(&format!("/v1/messages/{id}"), Some(&app.secret_key))
        .await;
    assert_eq!(
        (view["status"].as_str(), view["wechat_msgid"].as_str()),
        (Some("sent"), Some(msgid.as_str())),
        "{view}"
    );
    assert_eq!(credits(&app, "tmpl-a").await, 1, "spent once");
    assert_eq!(fake.credits("oUser1", "tmpl-a"), 1, "both sides agree");
    // The same event again settles nothing else.
    assert_eq!(push(&app, &sent, false).await.0, 200);
    assert_eq!(credits(&app, "tmpl-a").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_event_settles_an_unknown_outcome_sqlite() {
    if let Some(app) = spawn_app_with(Backend::Sqlite, "Asia/Shanghai", slow_reconcile).await {
        sent_event_settles(app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_event_settles_an_unknown_outcome_postgres() {
    if let Some(app) = spawn_app_with(Backend::Postgres, "Asia/Shanghai", slow_reconcile).await {
        sent_event_settles(app).await;
    }
}

/// The fake pushes popups and sent events as WeChat does: credits granted by one
/// tap arrive on both sides, and a send whose answer was lost is settled exactly.
async fn pushes_keep_both_sides_equal(app: TestApp) {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, TokenPolicy::default())
        .await
        .unwrap();
    configure(&app, Some(fake.base_url())).await;
    let template =
        json!({"title": "通知", "kind": "one_time", "fields": [{"key": "thing1", "name": "内容"}]});
    fake.add_template(Template::parse("tmpl-a", &template).unwrap());
    fake.push_to(huiliu_wechat::fake::PushTarget {
        url: callback(&app),
        token: TOKEN.into(),
        aes_key: Some(AES_KEY.into()),
    });
    for _ in 0..3 {
        fake.accept_and_push("oUser1", "tmpl-a").await.unwrap();
    }
    assert_eq!(credits(&app, "tmpl-a").await, 3);
    fake.inject(Fault::DropAfterSend { times: 1 });
    let mut ids = Vec::new();
    for n in 0..2 {
        let message = json!({"user_id": "u1", "template_id": "tmpl-a", "data": {"thing1": format!("到货{n}")}, "idempotency_key": format!("k{n}")});
        let (_, accepted) = app
            .call(
                reqwest::Method::POST,
                "/v1/messages",
                &app.secret_key,
                message.to_string(),
            )
            .await;
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    let started = Instant::now();
    for id in &ids {
        loop {
            let (_, view) = app
                .get(&format!("/v1/messages/{id}"), Some(&app.secret_key))
                .await;
            if view["status"] == "sent" {
                assert_eq!(view["attempts"], 1, "{view}");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(fake.sent().len(), 2, "each sent once");
    assert_eq!(
        (
            credits(&app, "tmpl-a").await,
            fake.credits("oUser1", "tmpl-a")
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_pushes_like_wechat_and_credits_stay_equal_sqlite() {
    if let Some(app) = spawn_app_with(Backend::Sqlite, "Asia/Shanghai", slow_reconcile).await {
        pushes_keep_both_sides_equal(app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_pushes_like_wechat_and_credits_stay_equal_postgres() {
    if let Some(app) = spawn_app_with(Backend::Postgres, "Asia/Shanghai", slow_reconcile).await {
        pushes_keep_both_sides_equal(app).await;
    }
}
