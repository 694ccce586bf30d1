//! Earning rules, tasks and the daily sign-in through the API: trusted events
//! earn within caps and budgets, untrusted ones never do, a replayed event
//! earns once, tasks pay once, the sign-in pays once a day.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.call(
        reqwest::Method::PUT,
        path,
        &app.secret_key,
        body.to_string(),
    )
    .await
}

async fn balance(app: &TestApp, user: &str) -> i64 {
    app.get(&format!("/v1/users/{user}/points"), Some(&app.secret_key))
        .await
        .1["balance"]
        .as_i64()
        .unwrap_or(0)
}

/// Waits until the user's balance is `wanted` (judging runs in the background).
async fn settles_at(app: &TestApp, user: &str, wanted: i64) {
    for _ in 0..100 {
        if balance(app, user).await == wanted {
            // And stays there: nothing more was on its way.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(balance(app, user).await, wanted, "{user} kept earning");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{user} has {} points, not {wanted}",
        balance(app, user).await
    );
}

fn order(id: &str, user: &str, fen: i64) -> Value {
    json!({"id": id, "user_id": user, "name": "order_paid", "time": jiff::Timestamp::now().to_string(), "props": {"amount_fen": fen, "channel": "wechat"}})
}

both_stores! {
    async fn trusted_events_earn_by_the_rules_within_caps(app: TestApp) {
        let (status, rule) = put(&app, "/v1/loyalty/rules/order-points", json!({
            "name": "消费积分", "event": "order_paid",
            "award": {"kind": "per_unit", "prop": "amount_fen", "points": 1, "per": 100},
            "caps": {"per_day": 50}
        })).await;
        assert_eq!(status, 200, "{rule}");
        assert_eq!(rule["key"], "order-points");
        put(&app, "/v1/loyalty/rules/big-spender", json!({
            "name": "大单奖励", "event": "order_paid",
            "filters": [{"prop": "amount_fen", "op": "gte", "value": 10000}],
            "award": {"kind": "fixed", "points": 100}, "budget": 150
        })).await;
        let (status, task) = put(&app, "/v1/loyalty/tasks/first-order", json!({"name": "首单", "kind": {"kind": "once", "event": "order_paid"}, "points": 10})).await;
        assert_eq!(status, 200, "{task}");

        // 25.99 yuan → 25 points, the first order pays 10 more.
        let (status, _) = app.post_events(json!([order("o1", "u1", 2599)])).await;
        assert_eq!(status, 200);
        settles_at(&app, "u1", 35).await;
        // 40 more would pass the daily cap of 50: 25 of them are paid.
        app.post_events(json!([order("o2", "u1", 4000)])).await;
        settles_at(&app, "u1", 60).await;
        // The same event again is a duplicate: it earns nothing.
        app.post_events(json!([order("o2", "u1", 4000)])).await;
        // From the mini-program (publishable key), an event never earns.
        let (status, _) = app.post_events_raw(&app.publishable_key, json!({"events": [order("o3", "u1", 9000)]}).to_string()).await;
        assert_eq!(status, 200);
        settles_at(&app, "u1", 60).await;
        let (_, history) = app.get("/v1/users/u1/points/history", Some(&app.secret_key)).await;
        let causes: Vec<(String, i64)> = history["entries"].as_array().unwrap().iter().rev()
            .map(|e| (format!("{}:{}", e["cause"]["type"].as_str().unwrap(), e["cause"]["id"].as_str().unwrap()), e["amount"].as_i64().unwrap()))
            .collect();
        assert_eq!(causes, [("rule:order-points".to_string(), 25), ("task:first-order".to_string(), 10), ("rule:order-points".to_string(), 25)]);

        // The budget of the big-order rule runs out across users: 100, then 50.
        app.post_events(json!([order("b1", "u2", 10000)])).await;
        settles_at(&app, "u2", 50 + 100 + 10).await;
        app.post_events(json!([order("b2", "u3", 10000)])).await;
        settles_at(&app, "u3", 50 + 50 + 10).await;
        app.post_events(json!([order("b3", "u4", 10000)])).await;
        settles_at(&app, "u4", 50 + 10).await;

        let (_, tasks) = app.get("/v1/users/u1/tasks", Some(&app.secret_key)).await;
        assert_eq!(tasks["tasks"][0]["key"], "first-order");
        assert_eq!((tasks["tasks"][0]["done"].as_bool(), tasks["tasks"][0]["progress"].as_i64()), (Some(true), Some(1)), "{tasks}");
        let (_, rules) = app.get("/v1/loyalty/rules", Some(&app.secret_key)).await;
        assert_eq!(rules["rules"].as_array().unwrap().len(), 2);
        // A removed rule stops earning; what it paid stays.
        let gone = app.client.delete(format!("{}/v1/loyalty/rules/order-points", app.base)).bearer_auth(&app.secret_key).send().await.unwrap();
        assert_eq!(gone.status(), 204);
        app.post_events(json!([order("o4", "u5", 5000)])).await;
        settles_at(&app, "u5", 10).await;
        assert_eq!(balance(&app, "u1").await, 60);
    }

    async fn tasks_count_progress_and_the_sign_in_pays_once_a_day(app: TestApp) {
        app.put_user("u1", "{}").await;
        put(&app, "/v1/loyalty/tasks/profile", json!({"name": "完善资料", "kind": {"kind": "once_all_props", "event": "profile_updated", "props": ["nickname", "phone"]}, "points": 20})).await;
        put(&app, "/v1/loyalty/tasks/daily-visits", json!({"name": "每日浏览3次", "kind": {"kind": "count", "event": "page_view", "target": 3, "period": "day"}, "points": 2})).await;
        let now = jiff::Timestamp::now().to_string();
        let event = |id: &str, name: &str, props: Value| json!({"id": id, "user_id": "u1", "name": name, "time": now, "props": props});
        app.post_events(json!([event("p1", "profile_updated", json!({"nickname": "小明"})), event("v1", "page_view", json!({})), event("v2", "page_view", json!({}))])).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, tasks) = app.get("/v1/users/u1/tasks", Some(&app.secret_key)).await;
        let progress: Vec<(i64, i64, bool)> = tasks["tasks"].as_array().unwrap().iter()
            .map(|t| (t["progress"].as_i64().unwrap(), t["target"].as_i64().unwrap(), t["done"].as_bool().unwrap())).collect();
        assert_eq!(progress, [(1, 2, false), (2, 3, false)], "{tasks}");
        app.post_events(json!([event("p2", "profile_updated", json!({"phone": "13800000000"})), event("v3", "page_view", json!({})), event("v4", "page_view", json!({}))])).await;
        settles_at(&app, "u1", 22).await;

        // The daily sign-in.
        let sign_in = || app.call(reqwest::Method::POST, "/v1/users/u1/sign-in", &app.secret_key, String::new());
        assert_eq!(sign_in().await.0, 409, "not configured yet");
        let (status, config) = put(&app, "/v1/loyalty/sign-in", json!({"points_by_day": [5, 10, 20], "cycle": true})).await;
        assert_eq!(status, 200, "{config}");
        let (status, first) = sign_in().await;
        assert_eq!((status, first["signed_in_now"].as_bool(), first["points"].as_i64(), first["streak"].as_i64(), first["balance"].as_i64()), (200, Some(true), Some(5), Some(1), Some(27)), "{first}");
        let (status, again) = sign_in().await;
        assert_eq!((status, again["signed_in_now"].as_bool(), again["transaction_id"].clone()), (200, Some(false), first["transaction_id"].clone()));
        assert_eq!(balance(&app, "u1").await, 27, "paid once today");
        let (_, tasks) = app.get("/v1/users/u1/tasks", Some(&app.secret_key)).await;
        assert_eq!((tasks["tasks"][0]["key"].as_str(), tasks["tasks"][0]["signed_today"].as_bool(), tasks["tasks"][0]["next_points"].as_i64()), (Some("sign_in"), Some(true), Some(10)), "{tasks}");
        assert_eq!(app.call(reqwest::Method::POST, "/v1/users/nobody/sign-in", &app.secret_key, String::new()).await.0, 404);
    }

    async fn definitions_are_checked_field_by_field(app: TestApp) {
        for (path, body, field) in [
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "order_paid", "award": {"kind": "fixed", "points": 0}}), "award.points"),
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "order_paid", "award": {"kind": "per_unit", "prop": "amount_fen", "points": 1, "per": 0}}), "award.per"),
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "$internal", "award": {"kind": "fixed", "points": 1}}), "event"),
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}, "growth": {"kind": "fixed", "points": -1}}), "growth.points"),
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}, "caps": {"per_dya": 5}}), "caps.per_dya"),
            ("/v1/loyalty/rules/r1", json!({"name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}, "filters": [{"prop": "a", "op": "like", "value": 1}]}), "filters[0].op"),
            ("/v1/loyalty/rules/Bad", json!({"name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}}), "key"),
            ("/v1/loyalty/rules/r1", json!({"key": "r2", "name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}}), "key"),
            ("/v1/loyalty/tasks/t1", json!({"name": "x", "kind": {"kind": "count", "event": "e", "target": 0, "period": "day"}, "points": 1}), "kind.target"),
            ("/v1/loyalty/tasks/sign_in", json!({"name": "x", "kind": {"kind": "once", "event": "e"}, "points": 1}), "key"),
            ("/v1/loyalty/sign-in", json!({"points_by_day": []}), "points_by_day"),
        ] {
            let (status, error) = put(&app, path, body.clone()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{path} {body} → {error}");
        }
        let (status, _) = app.call(reqwest::Method::PUT, "/v1/loyalty/rules/r1", &app.publishable_key,
            json!({"name": "x", "event": "e", "award": {"kind": "fixed", "points": 1}}).to_string()).await;
        assert!(status == 401 || status == 403, "the publishable key defines nothing: {status}");
        let (_, rules) = app.get("/v1/loyalty/rules", Some(&app.secret_key)).await;
        assert_eq!(rules["rules"], json!([]), "nothing stored by bad input");
    }

    async fn the_tier_multiplier_scales_rules_that_ask_for_it(app: TestApp) {
        put(&app, "/v1/tiers", json!({
            "tiers": [{"key": "member", "name": "会员", "threshold": 0},
                      {"key": "gold", "name": "黄金", "threshold": 1000, "multiplier_permille": 1500}],
            "window": {"kind": "lifetime"}, "downgrade": "recompute", "grace_days": 0
        })).await;
        put(&app, "/v1/loyalty/rules/scaled", json!({"name": "会员加倍", "event": "order_paid", "award": {"kind": "fixed", "points": 11}, "tier_multiplier": true})).await;
        // Orders also add growth value: one per yuan.
        let (status, flat) = put(&app, "/v1/loyalty/rules/flat", json!({"name": "固定", "event": "order_paid", "award": {"kind": "fixed", "points": 3},
            "growth": {"kind": "per_unit", "prop": "amount_fen", "points": 1, "per": 100}})).await;
        assert_eq!(status, 200, "{flat}");
        app.post_events(json!([order("o1", "u1", 100)])).await;
        settles_at(&app, "u1", 14).await;
        let (_, member) = app.get("/v1/users/u1/tier", Some(&app.secret_key)).await;
        assert_eq!((member["tier"].as_str(), member["lifetime_growth"].as_i64()), (Some("member"), Some(1)), "{member}");
        let (status, member) = app.call(reqwest::Method::POST, "/v1/users/u1/growth", &app.secret_key,
            json!({"amount": 999, "reason": "orders", "idempotency_key": "g1"}).to_string()).await;
        assert_eq!((status, member["tier"].as_str()), (200, Some("gold")), "{member}");
        // 11 × 1.5 = 16.5 → 16 (rounded down); the flat rule stays 3.
        app.post_events(json!([order("o2", "u1", 100)])).await;
        settles_at(&app, "u1", 14 + 16 + 3).await;
    }
}
