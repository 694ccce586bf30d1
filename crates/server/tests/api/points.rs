//! The points ledger through the API: earns and spends, soonest-expiring points
//! first, idempotent retries, bad input, expiry at its instant, racing spends.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn transact(app: &TestApp, body: Value) -> (u16, Value) {
    app.call(
        reqwest::Method::POST,
        "/v1/points/transactions",
        &app.secret_key,
        body.to_string(),
    )
    .await
}

async fn points(app: &TestApp, user: &str) -> Value {
    let (status, view) = app
        .get(&format!("/v1/users/{user}/points"), Some(&app.secret_key))
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

fn in_seconds(seconds: f64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs_f64(seconds)).to_string()
}

both_stores! {
    async fn earns_and_spends_keep_an_exact_balance(app: TestApp) {
        app.put_user("u1", "{}").await;
        let (status, earned) = transact(&app, json!({"user_id": "u1", "amount": 120, "reason": "order:1", "idempotency_key": "e1"})).await;
        assert_eq!(status, 200, "{earned}");
        assert_eq!(earned["balance"], 120);
        // A retry answers the same; the key with another body is refused.
        assert_eq!(transact(&app, json!({"user_id": "u1", "amount": 120, "reason": "order:1", "idempotency_key": "e1"})).await, (200, earned.clone()));
        let (status, error) = transact(&app, json!({"user_id": "u1", "amount": 121, "reason": "order:1", "idempotency_key": "e1"})).await;
        assert_eq!((status, error["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));
        let (status, spent) = transact(&app, json!({"user_id": "u1", "amount": -100, "reason": "redeem:cup", "idempotency_key": "s1"})).await;
        assert_eq!((status, spent["balance"].as_i64()), (200, Some(20)));
        assert_ne!(spent["transaction_id"], earned["transaction_id"]);
        // Beyond the balance: 409, nothing written.
        let (status, error) = transact(&app, json!({"user_id": "u1", "amount": -21, "reason": "redeem:mug", "idempotency_key": "s2"})).await;
        assert_eq!((status, error["error"]["code"].as_str(), error["error"]["field"].as_str()), (409, Some("insufficient_points"), Some("amount")));
        assert_eq!(points(&app, "u1").await["balance"], 20);
        // The refused key is free for a request that fits.
        let (status, _) = transact(&app, json!({"user_id": "u1", "amount": -20, "reason": "redeem:mug", "idempotency_key": "s2"})).await;
        assert_eq!(status, 200);
        assert_eq!(points(&app, "u1").await["balance"], 0);

        for (body, status_wanted, field) in [
            (json!({"user_id": "u1", "amount": 0, "reason": "x", "idempotency_key": "z"}), 422, "amount"),
            (json!({"user_id": "u1", "amount": 1.5, "reason": "x", "idempotency_key": "z"}), 422, "amount"),
            (json!({"user_id": "u1", "amount": 2_000_000_000_000i64, "reason": "x", "idempotency_key": "z"}), 422, "amount"),
            (json!({"user_id": "u1", "amount": 5, "reason": "", "idempotency_key": "z"}), 422, "reason"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x"}), 422, "idempotency_key"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "expires_at": "2020-01-01T00:00:00Z"}), 422, "expires_at"),
            (json!({"user_id": "u1", "amount": -5, "reason": "x", "idempotency_key": "z", "expires_at": in_seconds(60.0)}), 422, "expires_at"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "bonus": 1}), 422, "bonus"),
            (json!({"user_id": "nobody", "amount": 5, "reason": "x", "idempotency_key": "z"}), 404, ""),
        ] {
            let (status, error) = transact(&app, body.clone()).await;
            assert_eq!(status, status_wanted, "{body} → {error}");
            if !field.is_empty() {
                assert_eq!(error["error"]["field"], field, "{error}");
            }
        }
        assert_eq!(points(&app, "u1").await["balance"], 0, "nothing written by refused requests");
        let (status, _) = app.call(reqwest::Method::POST, "/v1/points/transactions", &app.publishable_key,
            json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "pk"}).to_string()).await;
        assert_eq!(status, 403, "the mini-program cannot grant itself points");
        let (status, _) = app.get("/v1/users/nobody/points", Some(&app.secret_key)).await;
        assert_eq!(status, 404);
    }

    async fn points_that_expire_soonest_are_spent_first_and_stop_counting_at_expiry(app: TestApp) {
        app.put_user("u1", "{}").await;
        transact(&app, json!({"user_id": "u1", "amount": 50, "reason": "signup", "idempotency_key": "e0"})).await;
        let (status, body) = transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "promo", "idempotency_key": "e1", "expires_at": in_seconds(1.5)})).await;
        assert_eq!(status, 200, "{body}");
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["expiring_30_days"].as_i64()), (Some(150), Some(100)));
        // The spend takes the expiring points.
        transact(&app, json!({"user_id": "u1", "amount": -30, "reason": "redeem", "idempotency_key": "s1"})).await;
        assert_eq!(points(&app, "u1").await["expiring_30_days"], 70);
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["expiring_30_days"].as_i64()), (Some(50), Some(0)), "{view}");
        let (status, _) = transact(&app, json!({"user_id": "u1", "amount": -51, "reason": "redeem", "idempotency_key": "s2"})).await;
        assert_eq!(status, 409, "expired points cannot be spent");
    }

    async fn racing_spends_never_overdraw(app: TestApp) {
        app.put_user("u1", "{}").await;
        transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "grant", "idempotency_key": "e"})).await;
        let mut racers = Vec::new();
        for n in 0..24 {
            let (client, base, key) = (app.client.clone(), app.base.clone(), app.secret_key.clone());
            racers.push(tokio::spawn(async move {
                let body = json!({"user_id": "u1", "amount": -10, "reason": "race", "idempotency_key": format!("r{n}")});
                client.post(format!("{base}/v1/points/transactions")).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for racer in racers {
            statuses.push(racer.await.unwrap());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 14, "{statuses:?}");
        assert_eq!(points(&app, "u1").await["balance"], 0);
    }

    async fn the_history_pages_newest_first_and_names_the_lots_that_paid(app: TestApp) {
        app.put_user("u1", "{}").await;
        let (_, first) = transact(&app, json!({"user_id": "u1", "amount": 30, "reason": "order:1", "idempotency_key": "e1"})).await;
        let (_, second) = transact(&app, json!({"user_id": "u1", "amount": 40, "reason": "order:2", "idempotency_key": "e2", "expires_at": in_seconds(3600.0)})).await;
        transact(&app, json!({"user_id": "u1", "amount": -50, "reason": "redeem:cup", "idempotency_key": "s1"})).await;
        let (status, page) = app.get("/v1/users/u1/points/history?limit=2", Some(&app.secret_key)).await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0]["kind"].as_str(), entries[0]["amount"].as_i64()), (Some("spend"), Some(-50)));
        let mut paid = serde_json::Map::new();
        paid.insert(second["transaction_id"].as_str().unwrap().into(), json!(40));
        paid.insert(first["transaction_id"].as_str().unwrap().into(), json!(10));
        assert_eq!(entries[0]["lots"], Value::Object(paid), "the expiring earn paid first");
        let next = page["next"].as_str().unwrap().to_string();
        let (_, rest) = app.get(&format!("/v1/users/u1/points/history?limit=2&before={next}"), Some(&app.secret_key)).await;
        assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
        assert_eq!(rest["entries"][0]["reason"], "order:1");
        assert_eq!(rest["next"], Value::Null);
        for bad in ["limit=0", "limit=500", "before=42", "page=2"] {
            let (status, _) = app.get(&format!("/v1/users/u1/points/history?{bad}"), Some(&app.secret_key)).await;
            assert_eq!(status, 422, "{bad}");
        }
    }

    async fn earns_follow_the_app_s_expiry_policy(app: TestApp) {
        app.put_user("u1", "{}").await;
        let (_, settings) = app.get("/v1/points/settings", Some(&app.secret_key)).await;
        assert_eq!(settings, json!({"expiry": {"kind": "never"}}));
        for bad in [json!({"expiry": {"kind": "weekly"}}), json!({"expiry": {"kind": "days", "days": 9999}}), json!({})] {
            let (status, error) = app.call(reqwest::Method::PUT, "/v1/points/settings", &app.secret_key, bad.to_string()).await;
            assert_eq!(status, 422, "{bad} → {error}");
        }
        let policy = json!({"expiry": {"kind": "days", "days": 0}});
        let (status, _) = app.call(reqwest::Method::PUT, "/v1/points/settings", &app.secret_key, policy.to_string()).await;
        assert_eq!(status, 200);
        // Earned now, the points expire at the end of today in Shanghai: within 30 days.
        transact(&app, json!({"user_id": "u1", "amount": 10, "reason": "sign-in", "idempotency_key": "e1"})).await;
        // An explicit expiry wins over the policy.
        transact(&app, json!({"user_id": "u1", "amount": 5, "reason": "promo", "idempotency_key": "e2", "expires_at": in_seconds(90.0 * 86400.0)})).await;
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["expiring_30_days"].as_i64()), (Some(15), Some(10)), "{view}");
    }
}
