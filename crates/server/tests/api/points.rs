//! The points ledger through the API: earns and spends, soonest-expiring points
//! first, idempotent retries, bad input, expiry at its instant, racing spends.

use crate::both_stores;
use crate::helpers::*;
use huiliu_store::Store;
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

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.call(
        reqwest::Method::POST,
        path,
        &app.secret_key,
        body.to_string(),
    )
    .await
}

fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
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
        assert_eq!(settings, json!({"expiry": {"kind": "never"}, "shortfall": "allow_debt"}));
        for bad in [json!({"expiry": {"kind": "weekly"}}), json!({"expiry": {"kind": "days", "days": 9999}}), json!({"shortfall": "maybe"}), json!({"tiers": 1})] {
            let (status, error) = app.call(reqwest::Method::PUT, "/v1/points/settings", &app.secret_key, bad.to_string()).await;
            assert_eq!(status, 422, "{bad} → {error}");
        }
        let policy = json!({"expiry": {"kind": "days", "days": 0}});
        let (status, _) = app.call(reqwest::Method::PUT, "/v1/points/settings", &app.secret_key, policy.to_string()).await;
        assert_eq!(status, 200);
        let (_, settings) = app.get("/v1/points/settings", Some(&app.secret_key)).await;
        assert_eq!(settings, json!({"expiry": {"kind": "days", "days": 0}, "shortfall": "allow_debt"}), "fields left out keep their value");
        // Earned now, the points expire at the end of today in Shanghai: within 30 days.
        transact(&app, json!({"user_id": "u1", "amount": 10, "reason": "sign-in", "idempotency_key": "e1"})).await;
        // An explicit expiry wins over the policy.
        transact(&app, json!({"user_id": "u1", "amount": 5, "reason": "promo", "idempotency_key": "e2", "expires_at": in_seconds(90.0 * 86400.0)})).await;
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["expiring_30_days"].as_i64()), (Some(15), Some(10)), "{view}");
    }

    async fn pending_earns_vest_later_and_can_be_voided(app: TestApp) {
        app.put_user("u1", "{}").await;
        let (status, pending) = transact(&app, json!({"user_id": "u1", "amount": 80, "reason": "order 7 paid", "idempotency_key": "p1",
            "vests_at": in_seconds(1.5), "cause": {"type": "order", "id": "7"}})).await;
        assert_eq!(status, 200, "{pending}");
        assert_eq!((pending["balance"].as_i64(), pending["pending"].as_i64()), (Some(0), Some(80)));
        let (status, _) = transact(&app, json!({"user_id": "u1", "amount": 50, "reason": "order 8 paid", "idempotency_key": "p2", "vests_at": in_seconds(600.0)})).await;
        assert_eq!(status, 200);
        assert_eq!(code(&transact(&app, json!({"user_id": "u1", "amount": -1, "reason": "x", "idempotency_key": "s0"})).await), (409, Some("insufficient_points")), "pending points are not spendable");
        // Order 8 is refunded inside its window: the earn is voided.
        let (_, history) = app.get("/v1/users/u1/points/history", Some(&app.secret_key)).await;
        let order8 = history["entries"][0]["transaction_id"].as_str().unwrap().to_string();
        let (status, voided) = post(&app, &format!("/v1/points/transactions/{order8}/reverse"), json!({"reason": "order 8 refunded"})).await;
        assert_eq!((status, voided["kind"].as_str(), voided["amount"].as_i64(), voided["pending"].as_i64()), (200, Some("void"), Some(-50), Some(80)), "{voided}");
        // A retry answers the same; the entry is not voided twice.
        assert_eq!(post(&app, &format!("/v1/points/transactions/{order8}/reverse"), json!({})).await, (200, voided.clone()));
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["pending"].as_i64()), (Some(80), Some(0)), "order 7 vested: {view}");
        // The sweep refreshes the cached figures once the lot vested.
        app.store.points_sweep(huiliu_domain::time::to_micros(jiff::Timestamp::now()), 100).await.unwrap();
        let (status, spent) = transact(&app, json!({"user_id": "u1", "amount": -80, "reason": "redeem", "idempotency_key": "s1"})).await;
        assert_eq!((status, spent["balance"].as_i64()), (200, Some(0)));
        let (_, history) = app.get("/v1/users/u1/points/history", Some(&app.secret_key)).await;
        let kinds: Vec<&str> = history["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["spend", "void", "earn", "earn"]);
        assert_eq!(history["entries"][1]["refers_to"].as_str(), Some(order8.as_str()));
        assert_eq!(history["entries"][3]["cause"], json!({"type": "order", "id": "7"}));
        assert_eq!(history["entries"][0]["cause"], json!({"type": "api", "id": null}));
        for (body, field) in [
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "vests_at": "2020-01-01T00:00:00Z"}), "vests_at"),
            (json!({"user_id": "u1", "amount": -5, "reason": "x", "idempotency_key": "z", "vests_at": in_seconds(60.0)}), "vests_at"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "vests_at": in_seconds(600.0), "expires_at": in_seconds(60.0)}), "vests_at"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "cause": {"type": "gift"}}), "cause.type"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "cause": {"type": "order", "id": 7}}), "cause.id"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "cause": {"type": "order", "why": "x"}}), "cause.why"),
            (json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "cause": "order"}), "cause"),
        ] {
            let (status, error) = transact(&app, body.clone()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{body} → {error}");
        }
        assert_eq!(points(&app, "u1").await["balance"], 0, "nothing written by bad input");
    }

    async fn holds_are_captured_or_released_exactly_once(app: TestApp) {
        app.put_user("u1", "{}").await;
        transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "order", "idempotency_key": "e1", "expires_at": in_seconds(86400.0)})).await;
        transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "order", "idempotency_key": "e2"})).await;
        let (status, hold) = post(&app, "/v1/points/holds", json!({"user_id": "u1", "amount": 150, "reason": "redeem cup", "idempotency_key": "h1", "cause": {"type": "redemption", "id": "r1"}})).await;
        assert_eq!((status, hold["kind"].as_str(), hold["balance"].as_i64(), hold["on_hold"].as_i64()), (200, Some("hold"), Some(50), Some(150)), "{hold}");
        assert_eq!(post(&app, "/v1/points/holds", json!({"user_id": "u1", "amount": 150, "reason": "redeem cup", "idempotency_key": "h1", "cause": {"type": "redemption", "id": "r1"}})).await, (200, hold.clone()), "a retried hold holds once");
        assert_eq!(code(&post(&app, "/v1/points/holds", json!({"user_id": "u1", "amount": 51, "reason": "redeem mug", "idempotency_key": "h2"})).await), (409, Some("insufficient_points")));
        let id = hold["transaction_id"].as_str().unwrap();
        let (status, captured) = post(&app, &format!("/v1/points/holds/{id}/capture"), json!({})).await;
        assert_eq!((status, captured["kind"].as_str(), captured["balance"].as_i64(), captured["on_hold"].as_i64()), (200, Some("capture"), Some(50), Some(0)), "{captured}");
        let empty = app.client.post(format!("{}/v1/points/holds/{id}/capture", app.base)).bearer_auth(&app.secret_key).send().await.unwrap();
        assert_eq!(empty.status(), 200, "a retried capture (empty body) answers as the first");
        assert_eq!(empty.json::<Value>().await.unwrap(), captured);
        assert_eq!(code(&post(&app, &format!("/v1/points/holds/{id}/release"), json!({})).await), (409, Some("hold_settled")));
        // A refund of the redemption: the captured points go back to their lots.
        let capture_id = captured["transaction_id"].as_str().unwrap();
        let (status, refunded) = post(&app, &format!("/v1/points/transactions/{capture_id}/reverse"), json!({"reason": "redemption r1 refunded", "cause": {"type": "redemption", "id": "r1"}})).await;
        assert_eq!((status, refunded["amount"].as_i64(), refunded["balance"].as_i64()), (200, Some(150), Some(200)), "{refunded}");
        assert_eq!(code(&post(&app, &format!("/v1/points/transactions/{capture_id}/reverse"), json!({"reason": "again"})).await).0, 200, "a retry answers the first reversal");

        // Released: the points return; a second hold that times out returns by itself.
        let (_, hold2) = post(&app, "/v1/points/holds", json!({"user_id": "u1", "amount": 30, "reason": "redeem mug", "idempotency_key": "h3"})).await;
        let id2 = hold2["transaction_id"].as_str().unwrap();
        let (status, released) = post(&app, &format!("/v1/points/holds/{id2}/release"), json!({})).await;
        assert_eq!((status, released["amount"].as_i64(), released["balance"].as_i64()), (200, Some(30), Some(200)));
        assert_eq!(code(&post(&app, &format!("/v1/points/holds/{id2}/capture"), json!({})).await), (409, Some("hold_settled")));
        let (_, hold3) = post(&app, "/v1/points/holds", json!({"user_id": "u1", "amount": 200, "reason": "redeem bag", "idempotency_key": "h4", "timeout_seconds": 1})).await;
        assert_eq!(points(&app, "u1").await["on_hold"], 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["on_hold"].as_i64()), (Some(200), Some(0)), "a timed-out hold counts as released at once");
        let id3 = hold3["transaction_id"].as_str().unwrap();
        assert_eq!(code(&post(&app, &format!("/v1/points/holds/{id3}/capture"), json!({})).await), (409, Some("hold_settled")), "too late to capture");
        assert_eq!(app.store.points_sweep(huiliu_domain::time::to_micros(jiff::Timestamp::now()), 100).await.unwrap(), 1);
        let (_, history) = app.get("/v1/users/u1/points/history?limit=1", Some(&app.secret_key)).await;
        assert_eq!((history["entries"][0]["kind"].as_str(), history["entries"][0]["amount"].as_i64(), history["entries"][0]["cause"]["type"].as_str()), (Some("release"), Some(200), Some("hold_timeout")));
        assert_eq!(history["entries"][0]["refers_to"].as_str(), Some(id3));

        for (path, body, wanted) in [
            ("/v1/points/holds", json!({"user_id": "u1", "amount": 0, "reason": "x", "idempotency_key": "z"}), (422, Some("invalid_amount"))),
            ("/v1/points/holds", json!({"user_id": "u1", "amount": -5, "reason": "x", "idempotency_key": "z"}), (422, Some("invalid_amount"))),
            ("/v1/points/holds", json!({"user_id": "u1", "amount": 5, "reason": "x", "idempotency_key": "z", "timeout_seconds": 0}), (422, Some("invalid_timeout"))),
            ("/v1/points/holds", json!({"user_id": "nobody", "amount": 5, "reason": "x", "idempotency_key": "z"}), (404, Some("unknown_user"))),
            ("/v1/points/holds/ptx_999999/capture", json!({}), (404, Some("unknown_transaction"))),
            ("/v1/points/holds/42/capture", json!({}), (404, Some("unknown_transaction"))),
            ("/v1/points/holds/ptx_1/capture", json!({"reason": ""}), (422, Some("invalid_reason"))),
            ("/v1/points/holds/ptx_1/capture", json!({}), (409, Some("not_applicable"))),
            (&format!("/v1/points/transactions/{id}/reverse"), json!({}), (409, Some("not_applicable"))),
        ] {
            let answer = post(&app, path, body.clone()).await;
            assert_eq!(code(&answer), wanted, "{path} {body} → {}", answer.1);
        }
        let (other, other_key) = app.other_app().await;
        let _ = other;
        let (status, _) = app.call(reqwest::Method::POST, &format!("/v1/points/holds/{id2}/release"), &other_key, "{}".to_string()).await;
        assert_eq!(status, 404, "another app cannot see this app's entries");
    }

    async fn clawbacks_follow_the_app_s_shortfall_policy(app: TestApp) {
        for user in ["u1", "u2"] {
            app.put_user(user, "{}").await;
        }
        let (_, e1) = transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "referral bonus", "idempotency_key": "e1", "cause": {"type": "referral", "id": "inv-1"}})).await;
        transact(&app, json!({"user_id": "u1", "amount": -70, "reason": "redeem", "idempotency_key": "s1"})).await;
        // Default policy: the part already spent becomes debt.
        let (status, reversed) = post(&app, &format!("/v1/points/transactions/{}/reverse", e1["transaction_id"].as_str().unwrap()), json!({"reason": "fraudulent referral"})).await;
        assert_eq!((status, reversed["amount"].as_i64(), reversed["balance"].as_i64(), reversed["debt"].as_i64()), (200, Some(-100), Some(-70), Some(70)), "{reversed}");
        assert_eq!(code(&post(&app, &format!("/v1/points/transactions/{}/reverse", reversed["transaction_id"].as_str().unwrap()), json!({})).await), (409, Some("not_applicable")), "a reversal is not reversed");
        // New points repay the debt first.
        let (_, earned) = transact(&app, json!({"user_id": "u1", "amount": 50, "reason": "order", "idempotency_key": "e2"})).await;
        assert_eq!((earned["balance"].as_i64(), earned["debt"].as_i64()), (Some(-20), Some(20)));
        assert_eq!(code(&transact(&app, json!({"user_id": "u1", "amount": -1, "reason": "x", "idempotency_key": "s2"})).await), (409, Some("insufficient_points")));

        let (status, _) = app.call(reqwest::Method::PUT, "/v1/points/settings", &app.secret_key, json!({"shortfall": "cap"}).to_string()).await;
        assert_eq!(status, 200);
        let (_, e3) = transact(&app, json!({"user_id": "u2", "amount": 100, "reason": "referral bonus", "idempotency_key": "e3"})).await;
        let (_, spend) = transact(&app, json!({"user_id": "u2", "amount": -70, "reason": "redeem", "idempotency_key": "s3"})).await;
        let (status, capped) = post(&app, &format!("/v1/points/transactions/{}/reverse", e3["transaction_id"].as_str().unwrap()), json!({"reason": "fraudulent referral"})).await;
        assert_eq!((status, capped["amount"].as_i64(), capped["shortfall"].as_i64(), capped["balance"].as_i64(), capped["debt"].as_i64()), (200, Some(-30), Some(70), Some(0), Some(0)), "{capped}");
        let (_, again) = post(&app, &format!("/v1/points/transactions/{}/reverse", e3["transaction_id"].as_str().unwrap()), json!({})).await;
        assert_eq!(again, capped, "a retry answers the same");
        // Refunding the spend of a clawed-back lot returns nothing to spend.
        let (status, refund) = post(&app, &format!("/v1/points/transactions/{}/reverse", spend["transaction_id"].as_str().unwrap()), json!({})).await;
        assert_eq!((status, refund["amount"].as_i64(), refund["balance"].as_i64()), (200, Some(0), Some(0)), "{refund}");
        let (_, history) = app.get("/v1/users/u2/points/history", Some(&app.secret_key)).await;
        assert_eq!(history["entries"][1]["shortfall"], 70);
    }

    async fn racing_holds_and_captures_never_overdraw_or_double_count(app: TestApp) {
        app.put_user("u1", "{}").await;
        transact(&app, json!({"user_id": "u1", "amount": 1000, "reason": "order", "idempotency_key": "e1"})).await;
        // 40 holds of 30 race for 1,000 points: exactly 33 fit.
        let holds = futures_util::future::join_all((0..40).map(|i| {
            let app = &app;
            async move { post(app, "/v1/points/holds", json!({"user_id": "u1", "amount": 30, "reason": "redeem", "idempotency_key": format!("h{i}")})).await }
        })).await;
        let held: Vec<String> = holds.iter().filter(|(s, _)| *s == 200).map(|(_, h)| h["transaction_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(held.len(), 33);
        assert!(holds.iter().all(|(s, b)| *s == 200 || b["error"]["code"] == "insufficient_points"));
        // Each hold captured and released at the same time, twice: one of the two wins per hold.
        let settled = futures_util::future::join_all(held.iter().flat_map(|id| {
            let app = &app;
            ["capture", "release", "capture", "release"].map(move |action| async move {
                (action, post(app, &format!("/v1/points/holds/{id}/{action}"), json!({})).await)
            })
        })).await;
        let captures = settled.chunks(4).filter(|c| c.iter().any(|(a, (s, _))| *a == "capture" && *s == 200)).count();
        for chunk in settled.chunks(4) {
            let wins: Vec<&str> = chunk.iter().filter(|(_, (s, _))| *s == 200).map(|(a, _)| *a).collect();
            assert!(wins == ["capture", "capture"] || wins == ["release", "release"], "{wins:?}");
        }
        let view = points(&app, "u1").await;
        assert_eq!((view["balance"].as_i64(), view["on_hold"].as_i64()), (Some(1000 - 30 * captures as i64), Some(0)), "{view}");
    }

    async fn the_liability_report_adds_up_what_the_app_owes(app: TestApp) {
        for user in ["u1", "u2", "u3"] {
            app.put_user(user, "{}").await;
        }
        transact(&app, json!({"user_id": "u1", "amount": 100, "reason": "a", "idempotency_key": "e1", "expires_at": in_seconds(10.0 * 86400.0)})).await;
        transact(&app, json!({"user_id": "u1", "amount": 200, "reason": "b", "idempotency_key": "e2", "expires_at": in_seconds(60.0 * 86400.0)})).await;
        transact(&app, json!({"user_id": "u2", "amount": 400, "reason": "c", "idempotency_key": "e3"})).await;
        transact(&app, json!({"user_id": "u2", "amount": 50, "reason": "d", "idempotency_key": "e4", "vests_at": in_seconds(86400.0)})).await;
        transact(&app, json!({"user_id": "u2", "amount": -150, "reason": "spend", "idempotency_key": "s1"})).await;
        post(&app, "/v1/points/holds", json!({"user_id": "u2", "amount": 30, "reason": "redeem", "idempotency_key": "h1"})).await;
        let (_, bonus) = transact(&app, json!({"user_id": "u3", "amount": 80, "reason": "bonus", "idempotency_key": "e5"})).await;
        transact(&app, json!({"user_id": "u3", "amount": -60, "reason": "spend", "idempotency_key": "s2"})).await;
        post(&app, &format!("/v1/points/transactions/{}/reverse", bonus["transaction_id"].as_str().unwrap()), json!({})).await;
        transact(&app, json!({"user_id": "u1", "amount": 7, "reason": "short-lived", "idempotency_key": "e6", "expires_at": in_seconds(1.0)})).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        app.store.points_sweep(huiliu_domain::time::to_micros(jiff::Timestamp::now()), 100).await.unwrap();

        let (status, report) = app.get("/v1/loyalty/liability?months=2", Some(&app.secret_key)).await;
        assert_eq!(status, 200, "{report}");
        // u1 300 + u2 (400 − 150 − 30) + u3 (debt 60 after the clawback; 7 expired, 0 live) = 520 − 60.
        assert_eq!(report["outstanding"], 460, "{report}");
        assert_eq!((report["pending"].as_i64(), report["on_hold"].as_i64(), report["debt"].as_i64()), (Some(50), Some(30), Some(60)));
        assert_eq!((report["expiring_30_days"].as_i64(), report["expiring_90_days"].as_i64()), (Some(100), Some(300)));
        let months = report["months"].as_array().unwrap();
        assert_eq!(months.len(), 2);
        let this = &months[1];
        assert_eq!(this["month"].as_str().unwrap(), jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).strftime("%Y-%m").to_string());
        assert_eq!((this["issued"].as_i64(), this["redeemed"].as_i64(), this["expired"].as_i64(), this["reversed"].as_i64()), (Some(837), Some(240), Some(7), Some(-80)), "{this}");
        assert_eq!(months[0]["issued"], 0);
        for bad in ["months=0", "months=37", "months=x"] {
            let (status, _) = app.get(&format!("/v1/loyalty/liability?{bad}"), Some(&app.secret_key)).await;
            assert_eq!(status, 422, "{bad}");
        }
        assert_eq!(app.get("/v1/loyalty/liability?month=2", Some(&app.secret_key)).await.0, 400);
        let (_, other_key) = app.other_app().await;
        let (_, theirs) = app.get("/v1/loyalty/liability", Some(&other_key)).await;
        assert_eq!((theirs["outstanding"].as_i64(), theirs["months"].as_array().map(Vec::len)), (Some(0), Some(12)), "another app sees only its own");
    }
}
