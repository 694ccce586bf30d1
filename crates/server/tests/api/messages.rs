//! Subscription messages end to end: POST → outbox → the fake WeChat → outcome,
//! with the credits checked on both sides after every case.

use crate::helpers::*;
use huiliu_domain::templates::Template;
use huiliu_wechat::fake::{FakeWechat, Fault, TokenPolicy};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";
const TEMPLATE: &str = "tmpl-ship";

/// Dispatch tuned for tests: short leases and reconciliation, quick polling.
fn fast_dispatch(state: &mut huiliu_server::AppState) {
    state.dispatch.lease = Duration::from_secs(3);
    state.dispatch.reconcile = Duration::from_secs(1);
    state.dispatch.idle_poll = Duration::from_millis(50);
    state.dispatch.quota_backoff = Duration::from_millis(500);
}

/// One test per store, each over a server with [`fast_dispatch`].
macro_rules! message_tests {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn body($app: TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(app) = spawn_app_with(Backend::Sqlite, "Asia/Shanghai", fast_dispatch).await {
                        body(app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = spawn_app_with(Backend::Postgres, "Asia/Shanghai", fast_dispatch).await {
                        body(app).await;
                    }
                }
            }
        )*
    };
}

fn template_body() -> Value {
    json!({"title": "发货通知", "kind": "one_time", "fields": [
        {"key": "thing1", "name": "商品名称"}, {"key": "time2", "name": "发货时间"}
    ]})
}

/// A fake WeChat, the app's settings pointing at it, and the template on both sides.
async fn wechat(app: &TestApp) -> FakeWechat {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, TokenPolicy::default())
        .await
        .unwrap();
    let key = app.secret_key.clone();
    let settings = json!({"appid": APPID, "secret": SECRET, "api_base": fake.base_url()});
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            "/v1/wechat/settings",
            &key,
            settings.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/v1/templates/{TEMPLATE}");
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            &path,
            &key,
            template_body().to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    fake.add_template(Template::parse(TEMPLATE, &template_body()).unwrap());
    fake
}

/// A user with an openid who accepted the prompt `accepts` times (reported to
/// huiliu, and granted on the fake's side).
async fn subscriber(app: &TestApp, fake: &FakeWechat, user: &str, accepts: u32) {
    let openid = format!("o-{user}");
    let (status, _) = app
        .put_user(user, &json!({ "openid": openid }).to_string())
        .await;
    assert!(status == 200 || status == 201);
    for _ in 0..accepts {
        let report = json!({"user_id": user, "results": {TEMPLATE: "accept"}});
        let (status, body) = app
            .call(
                reqwest::Method::POST,
                "/v1/subscriptions",
                &app.secret_key,
                report.to_string(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        fake.accept(&openid, TEMPLATE);
    }
}

fn message(user: &str, key: &str) -> Value {
    json!({
        "user_id": user, "template_id": TEMPLATE, "idempotency_key": key,
        "data": {"thing1": "无线降噪耳机", "time2": "2026年11月24日 10:30"},
        "page": "pages/order/detail?id=7"
    })
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    app.call(
        reqwest::Method::POST,
        "/v1/messages",
        &app.secret_key,
        body.to_string(),
    )
    .await
}

/// Polls a message until its status is final (or `sending` is all that is left to see).
async fn wait_for(app: &TestApp, id: &str, statuses: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        let (status, view) = app
            .get(&format!("/v1/messages/{id}"), Some(&app.secret_key))
            .await;
        assert_eq!(status, 200, "{view}");
        if statuses.contains(&view["status"].as_str().unwrap()) {
            return view;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn credits(app: &TestApp, user: &str) -> (u64, u64) {
    let (_, view) = app
        .get(
            &format!("/v1/users/{user}/subscriptions"),
            Some(&app.secret_key),
        )
        .await;
    let template = &view["templates"][0];
    (
        template["credits"].as_u64().unwrap_or(0),
        template["reserved"].as_u64().unwrap_or(0),
    )
}

message_tests! {
    async fn a_message_is_sent_once_with_its_credit_spent(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 2).await;
        let (status, accepted) = post(&app, &message("u1", "order-7-shipped")).await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(accepted["status"], "queued");
        let id = accepted["id"].as_str().unwrap().to_string();
        // A retry of the request is the same message; the key with another body is 409.
        assert_eq!(post(&app, &message("u1", "order-7-shipped")).await, (202, accepted.clone()));
        let mut other = message("u1", "order-7-shipped");
        other["data"]["thing1"] = json!("另一件商品");
        let (status, error) = post(&app, &other).await;
        assert_eq!((status, error["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));

        let view = wait_for(&app, &id, &["sent", "failed", "skipped", "expired"]).await;
        assert_eq!(view["status"], "sent", "{view}");
        assert_eq!(view["attempts"], 1);
        let sent = fake.sent();
        assert_eq!(sent.len(), 1, "sent exactly once");
        assert_eq!(view["wechat_msgid"], sent[0].msgid.to_string());
        assert_eq!(sent[0].openid, "o-u1");
        assert_eq!(sent[0].data, json!({"thing1": {"value": "无线降噪耳机"}, "time2": {"value": "2026年11月24日 10:30"}}));
        let tracking = view["tracking"].as_str().unwrap();
        assert_eq!(sent[0].page.as_deref(), Some(format!("pages/order/detail?id=7&hl_t={tracking}").as_str()));
        assert_eq!(credits(&app, "u1").await, (1, 0));
        assert_eq!(fake.credits("o-u1", TEMPLATE), 1, "both sides agree");
    }

    async fn bad_messages_are_refused_before_anything_is_stored(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 1).await;
        // 21 Chinese characters: one over thing's limit of 20 characters (not bytes).
        let mut long = message("u1", "k-long");
        long["data"]["thing1"] = json!("一二三四五六七八九十一二三四五六七八九十一");
        let (status, error) = post(&app, &long).await;
        assert_eq!((status, error["error"]["field"].as_str()), (422, Some("data.thing1")), "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("20"), "{error}");
        let mut exactly = message("u1", "k-20");
        exactly["data"]["thing1"] = json!("一二三四五六七八九十一二三四五六七八九十");
        let mut missing = message("u1", "k-missing");
        missing["data"].as_object_mut().unwrap().remove("time2");
        let mut unknown_template = message("u1", "k-tmpl");
        unknown_template["template_id"] = json!("tmpl-none");
        let mut no_key = message("u1", "k");
        no_key.as_object_mut().unwrap().remove("idempotency_key");
        let mut bad_ttl = message("u1", "k-ttl");
        bad_ttl["ttl_seconds"] = json!(5);
        let mut bad_page = message("u1", "k-page");
        bad_page["page"] = json!("pages/a b");
        for (body, status_wanted, field) in [
            (missing, 422, "data.time2"),
            (unknown_template, 422, "template_id"),
            (no_key, 422, "idempotency_key"),
            (bad_ttl, 422, "ttl_seconds"),
            (bad_page, 422, "page"),
            (message("stranger", "k-stranger"), 404, ""),
        ] {
            let (status, error) = post(&app, &body).await;
            assert_eq!(status, status_wanted, "{body} → {error}");
            if !field.is_empty() {
                assert_eq!(error["error"]["field"], field, "{error}");
            }
        }
        assert_eq!(credits(&app, "u1").await, (1, 0), "no credit touched");
        // The rejected key was never stored: it is free for a valid message.
        let (status, accepted) = post(&app, &exactly).await;
        assert_eq!(status, 202, "{accepted}");
        let view = wait_for(&app, accepted["id"].as_str().unwrap(), &["sent", "failed"]).await;
        assert_eq!(view["status"], "sent", "{view}");
        assert_eq!(fake.sent().len(), 1);
    }

    async fn users_without_credit_or_openid_are_skipped_and_nothing_is_sent(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "no-credit", 0).await;
        let (status, _) = app.put_user("no-openid", r#"{"attributes": {}}"#).await;
        assert!(status == 200 || status == 201);
        let report = json!({"user_id": "no-openid", "results": {TEMPLATE: "accept"}});
        app.call(reqwest::Method::POST, "/v1/subscriptions", &app.secret_key, report.to_string()).await;
        for (user, reason) in [("no-credit", "no_credit"), ("no-openid", "no_openid")] {
            let (status, accepted) = post(&app, &message(user, &format!("k-{user}"))).await;
            assert_eq!(status, 202);
            assert_eq!(accepted["status"], "skipped", "{accepted}");
            assert_eq!(accepted["error"]["code"], reason);
            let (_, view) = app.get(&format!("/v1/messages/{}", accepted["id"].as_str().unwrap()), Some(&app.secret_key)).await;
            assert_eq!((view["status"].as_str(), view["error"]["code"].as_str()), (Some("skipped"), Some(reason)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(fake.sent().is_empty());
        // Another app cannot read these messages.
        let (_, other_key) = app.other_app().await;
        let (_, accepted) = post(&app, &message("no-credit", "k-no-credit")).await;
        let (status, _) = app.get(&format!("/v1/messages/{}", accepted["id"].as_str().unwrap()), Some(&other_key)).await;
        assert_eq!(status, 404);
    }

    async fn wechat_saying_no_subscription_zeroes_the_credits(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 0).await;
        // huiliu was told of two acceptances WeChat never saw.
        for n in 0..2 {
            let report = json!({"user_id": "u1", "results": {TEMPLATE: "accept"}, "idempotency_key": format!("r{n}")});
            app.call(reqwest::Method::POST, "/v1/subscriptions", &app.secret_key, report.to_string()).await;
        }
        let (_, accepted) = post(&app, &message("u1", "k1")).await;
        let view = wait_for(&app, accepted["id"].as_str().unwrap(), &["sent", "failed"]).await;
        assert_eq!((view["status"].as_str(), view["error"]["errcode"].as_i64()), (Some("failed"), Some(43101)), "{view}");
        assert_eq!(view["attempts"], 1, "never retried");
        assert_eq!(credits(&app, "u1").await, (0, 0));
    }

    async fn retryable_errors_are_retried_with_the_credit_released_meanwhile(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 1).await;
        fake.inject(Fault::Errcode { errcode: -1, times: 2 });
        let (_, accepted) = post(&app, &message("u1", "k1")).await;
        let id = accepted["id"].as_str().unwrap();
        // Between attempts (backoff 1 s, then 2 s) the message is queued again and
        // its credit available.
        let started = Instant::now();
        loop {
            let (_, view) = app.get(&format!("/v1/messages/{id}"), Some(&app.secret_key)).await;
            if view["status"] == "queued" && view["attempts"] == 1 {
                assert_eq!(view["error"]["errcode"], json!(null), "a retry is not an error yet");
                assert_eq!(credits(&app, "u1").await, (1, 0), "released while waiting");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let view = wait_for(&app, id, &["sent", "failed"]).await;
        assert_eq!(view["status"], "sent", "{view}");
        assert_eq!(view["attempts"], 3, "two -1 answers, then sent");
        assert_eq!(fake.sent().len(), 1);
        assert_eq!(credits(&app, "u1").await, (0, 0));
        assert_eq!(fake.credits("o-u1", TEMPLATE), 0);
    }

    async fn final_errors_fail_at_once_and_43107_disables_the_template(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 3).await;
        fake.inject(Fault::Errcode { errcode: 45168, times: 1 });
        let (_, accepted) = post(&app, &message("u1", "k1")).await;
        let view = wait_for(&app, accepted["id"].as_str().unwrap(), &["sent", "failed"]).await;
        assert_eq!((view["status"].as_str(), view["error"]["errcode"].as_i64(), view["attempts"].as_u64()), (Some("failed"), Some(45168), Some(1)));
        assert_eq!(credits(&app, "u1").await, (3, 0), "the credit went back");

        fake.inject(Fault::Errcode { errcode: 43107, times: 1 });
        let (_, accepted) = post(&app, &message("u1", "k2")).await;
        let view = wait_for(&app, accepted["id"].as_str().unwrap(), &["sent", "failed"]).await;
        assert_eq!(view["error"]["errcode"], 43107, "{view}");
        let (_, template) = app.get(&format!("/v1/templates/{TEMPLATE}"), Some(&app.secret_key)).await;
        assert_eq!(template["disabled_reason"], "wechat_43107", "{template}");
        let (_, accepted) = post(&app, &message("u1", "k3")).await;
        assert_eq!((accepted["status"].as_str(), accepted["error"]["code"].as_str()), (Some("skipped"), Some("template_disabled")));
        assert!(fake.sent().is_empty());
        assert_eq!(credits(&app, "u1").await, (3, 0));
        // Re-enabling the template (PUT it again) lets messages go.
        let path = format!("/v1/templates/{TEMPLATE}");
        app.call(reqwest::Method::PUT, &path, &app.secret_key, template_body().to_string()).await;
        let (_, accepted) = post(&app, &message("u1", "k4")).await;
        let view = wait_for(&app, accepted["id"].as_str().unwrap(), &["sent", "failed"]).await;
        assert_eq!(view["status"], "sent", "{view}");
    }

    async fn a_token_that_stops_working_mid_batch_is_refreshed_once(app: TestApp) {
        let fake = wechat(&app).await;
        for u in 0..20 {
            subscriber(&app, &fake, &format!("u{u}"), 1).await;
        }
        let (_, first) = post(&app, &message("u0", "k0")).await;
        wait_for(&app, first["id"].as_str().unwrap(), &["sent"]).await;
        fake.expire_token();
        let mut ids = Vec::new();
        for u in 1..20 {
            let (_, accepted) = post(&app, &message(&format!("u{u}"), &format!("k{u}"))).await;
            ids.push(accepted["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            let view = wait_for(&app, id, &["sent", "failed"]).await;
            assert_eq!(view["status"], "sent", "{view}");
        }
        assert_eq!(fake.sent().len(), 20);
        assert_eq!(fake.tokens_issued(), 2, "one refresh for the whole batch");
    }

    async fn one_send_in_flight_per_user(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 5).await;
        // Slow answers: a second send to the user while one is in flight would get 43108.
        fake.inject(Fault::Slow { delay: Duration::from_millis(150), times: 5 });
        let mut ids = Vec::new();
        for n in 0..5 {
            let (_, accepted) = post(&app, &message("u1", &format!("k{n}"))).await;
            ids.push(accepted["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            let view = wait_for(&app, id, &["sent", "failed"]).await;
            assert_eq!((view["status"].as_str(), view["attempts"].as_u64()), (Some("sent"), Some(1)), "no 43108 retry: {view}");
        }
        assert_eq!(fake.sent().len(), 5);
        assert_eq!(credits(&app, "u1").await, (0, 0));
    }

    async fn a_send_without_an_answer_is_never_sent_again(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 2).await;
        fake.inject(Fault::DropAfterSend { times: 1 });
        let (_, accepted) = post(&app, &message("u1", "k1")).await;
        let id = accepted["id"].as_str().unwrap();
        // While huiliu waits for evidence the message shows as sending, its credit held.
        let view = wait_for(&app, id, &["sending", "failed"]).await;
        if view["status"] == "sending" {
            let (credits_now, reserved) = credits(&app, "u1").await;
            assert_eq!(credits_now + reserved, 2);
        }
        let view = wait_for(&app, id, &["failed", "sent"]).await;
        assert_eq!(view["error"]["code"], "outcome_unknown", "{view}");
        assert_eq!(view["attempts"], 1, "never resent");
        assert_eq!(fake.sent().len(), 1, "WeChat got it once");
        // Documented policy: with no sent event the credit is released (huiliu 2,
        // WeChat 1); WeChat's 43101 corrects the count when it runs out.
        assert_eq!(credits(&app, "u1").await, (2, 0));
        assert_eq!(fake.credits("o-u1", TEMPLATE), 1);
    }

    async fn a_spent_daily_quota_delays_sends_without_losing_or_doubling_any(app: TestApp) {
        let fake = wechat(&app).await;
        for u in 0..5 {
            subscriber(&app, &fake, &format!("u{u}"), 1).await;
        }
        fake.inject(Fault::QuotaFor(Duration::from_secs(2)));
        let started = Instant::now();
        let mut ids = Vec::new();
        for u in 0..5 {
            let (_, accepted) = post(&app, &message(&format!("u{u}"), &format!("k{u}"))).await;
            ids.push(accepted["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            let view = wait_for(&app, id, &["sent", "failed", "expired"]).await;
            assert_eq!(view["status"], "sent", "{view}");
            assert!(view["attempts"].as_u64().unwrap() >= 2, "{view}");
        }
        assert!(started.elapsed() >= Duration::from_secs(2), "nothing went out while the quota was spent");
        assert_eq!(fake.sent().len(), 5);
        for u in 0..5 {
            assert_eq!(credits(&app, &format!("u{u}")).await, (0, 0));
        }
    }

    async fn a_launch_from_the_card_marks_the_message_opened(app: TestApp) {
        let fake = wechat(&app).await;
        subscriber(&app, &fake, "u1", 1).await;
        subscriber(&app, &fake, "u2", 0).await;
        let (_, accepted) = post(&app, &message("u1", "k1")).await;
        let id = accepted["id"].as_str().unwrap();
        let view = wait_for(&app, id, &["sent", "failed"]).await;
        let code = view["tracking"].as_str().unwrap().to_string();
        assert_eq!(view["opened_at"], Value::Null);
        let launch = |event_id: &str, user: &str, props: Value| {
            let mut event = crate::helpers::event(event_id, user);
            event["props"] = props;
            event["time"] = json!(jiff::Timestamp::now().to_string());
            event
        };
        // Another user's launch with the code, a launch without it, and one from
        // before the send open nothing.
        let mut before = launch("e0", "u1", json!({"scene": 1014, "query": {"hl_t": code}}));
        before["time"] = json!((jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string());
        let (status, _) = app
            .post_events(json!([
                before,
                launch("e1", "u2", json!({"scene": 1014, "query": {"hl_t": code}})),
                launch("e2", "u1", json!({"scene": 1001})),
            ]))
            .await;
        assert_eq!(status, 200);
        let (_, view) = app.get(&format!("/v1/messages/{id}"), Some(&app.secret_key)).await;
        assert_eq!(view["opened_at"], Value::Null);
        // The user opens the card (scene 1014, the query as the launch options give it).
        app.post_events(json!([launch("e3", "u1", json!({"scene": 1014, "path": "pages/order/detail", "query": {"id": "7", "hl_t": code}}))]))
            .await;
        let (_, opened) = app.get(&format!("/v1/messages/{id}"), Some(&app.secret_key)).await;
        assert!(opened["opened_at"].is_string(), "{opened}");
        // A later launch keeps the first open.
        app.post_events(json!([launch("e4", "u1", json!({"scene": 1107, "query": format!("hl_t={code}")}))]))
            .await;
        let (_, again) = app.get(&format!("/v1/messages/{id}"), Some(&app.secret_key)).await;
        assert_eq!(again["opened_at"], opened["opened_at"]);
    }
}
