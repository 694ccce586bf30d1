//! The redemption mall and tiers through the API: rewards, coupon pools,
//! redemptions with their limits, cancellation and fulfilment, tier-restricted
//! rewards, and racing redeemers for the last units.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    app.call(method, path, &app.secret_key, body.to_string())
        .await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    send(app, reqwest::Method::POST, path, body).await
}

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    send(app, reqwest::Method::PUT, path, body).await
}

fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"]["code"].as_str())
}

async fn give(app: &TestApp, user: &str, points: i64) {
    app.put_user(user, "{}").await;
    let (status, body) = post(app, "/v1/points/transactions", json!({"user_id": user, "amount": points, "reason": "seed", "idempotency_key": format!("seed-{user}")})).await;
    assert_eq!(status, 200, "{body}");
}

async fn balance(app: &TestApp, user: &str) -> i64 {
    app.get(&format!("/v1/users/{user}/points"), Some(&app.secret_key))
        .await
        .1["balance"]
        .as_i64()
        .unwrap()
}

async fn redeem(app: &TestApp, user: &str, reward: &str, key: &str) -> (u16, Value) {
    post(
        app,
        "/v1/redemptions",
        json!({"user_id": user, "reward_key": reward, "idempotency_key": key}),
    )
    .await
}

both_stores! {
    async fn redemptions_hold_take_stock_issue_and_capture_once(app: TestApp) {
        give(&app, "u1", 1000).await;
        give(&app, "u2", 100).await;
        let (status, mug) = put(&app, "/v1/rewards/mug", json!({"name": "马克杯", "kind": "physical", "points_price": 300, "stock": 2, "per_user_limit": 1})).await;
        assert_eq!((status, mug["available"].as_i64()), (200, Some(2)), "{mug}");
        let (status, coupon) = put(&app, "/v1/rewards/coffee", json!({"name": "咖啡券", "kind": "coupon_code", "points_price": 100, "cash_price_fen": 990})).await;
        assert_eq!((status, coupon["available"].as_i64()), (200, Some(0)));
        let (status, added) = post(&app, "/v1/rewards/coffee/codes", json!({"codes": ["C-1", " C-2 ", "C-1"]})).await;
        assert_eq!((status, added["added"].as_u64(), added["already_there"].as_u64(), added["available"].as_i64()), (200, Some(2), Some(1), Some(2)), "{added}");

        // Redeemed: hold → unit → capture, in one answer; a retry answers the same.
        let (status, r1) = redeem(&app, "u1", "mug", "r1").await;
        assert_eq!((status, r1["status"].as_str(), r1["points"].as_i64(), r1["balance"].as_i64()), (200, Some("awaiting_fulfilment"), Some(300), Some(700)), "{r1}");
        assert_eq!(redeem(&app, "u1", "mug", "r1").await, (200, r1.clone()));
        assert_eq!(code(&redeem(&app, "u1", "coffee", "r1").await), (409, Some("idempotency_key_reused")));
        assert_eq!(balance(&app, "u1").await, 700);
        assert_eq!(code(&redeem(&app, "u1", "mug", "r2").await), (409, Some("redemption_limit_reached")));
        assert_eq!(code(&redeem(&app, "u2", "mug", "r3").await), (409, Some("insufficient_points")));
        assert_eq!(balance(&app, "u2").await, 100, "nothing held by a refused redemption");
        let (_, history) = app.get("/v1/users/u1/points/history", Some(&app.secret_key)).await;
        let kinds: Vec<&str> = history["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["capture", "hold", "earn"]);
        assert_eq!(history["entries"][0]["cause"], json!({"type": "redemption", "id": r1["redemption_id"]}));

        // Coupon codes: each issued once; an empty pool is sold out.
        let (_, c1) = redeem(&app, "u1", "coffee", "c1").await;
        let (_, c2) = redeem(&app, "u1", "coffee", "c2").await;
        let codes: HashSet<&str> = [c1["code"].as_str().unwrap(), c2["code"].as_str().unwrap()].into();
        assert_eq!(codes, HashSet::from(["C-1", "C-2"]));
        assert_eq!(c1["status"], "completed");
        assert_eq!(code(&redeem(&app, "u1", "coffee", "c3").await), (409, Some("sold_out")));
        assert_eq!(balance(&app, "u1").await, 500);

        // Cancel: points back; the mug's unit back in stock; a coupon code is not given out again.
        let path = format!("/v1/redemptions/{}/cancel", c1["redemption_id"].as_str().unwrap());
        let (status, cancelled) = post(&app, &path, json!({})).await;
        assert_eq!((status, cancelled["status"].as_str(), cancelled["balance"].as_i64()), (200, Some("cancelled"), Some(600)), "{cancelled}");
        assert_eq!(post(&app, &path, json!({})).await.1["refund_id"], cancelled["refund_id"], "a retried cancel refunds once");
        assert_eq!(balance(&app, "u1").await, 600);
        let (_, coffee) = app.get("/v1/rewards/coffee", Some(&app.secret_key)).await;
        assert_eq!(coffee["available"], 0);
        let mug_path = format!("/v1/redemptions/{}", r1["redemption_id"].as_str().unwrap());
        let (status, fulfilled) = post(&app, &format!("{mug_path}/fulfil"), json!({})).await;
        assert_eq!((status, fulfilled["status"].as_str()), (200, Some("fulfilled")));
        assert_eq!(code(&post(&app, &format!("{mug_path}/cancel"), json!({})).await), (409, Some("redemption_state")));
        let (status, read) = app.get(&mug_path, Some(&app.secret_key)).await;
        assert_eq!((status, read["status"].as_str(), read["user_id"].as_str()), (200, Some("fulfilled"), Some("u1")));
        give(&app, "u3", 1000).await;
        let (_, r3) = redeem(&app, "u3", "mug", "r4").await;
        assert_eq!(code(&redeem(&app, "u1", "mug", "r5").await), (409, Some("redemption_limit_reached")));
        let (_, mug) = app.get("/v1/rewards/mug", Some(&app.secret_key)).await;
        assert_eq!((mug["available"].as_i64(), mug["stock"].as_i64(), mug["redeemed"].as_i64()), (Some(0), Some(0), Some(2)));
        post(&app, &format!("/v1/redemptions/{}/cancel", r3["redemption_id"].as_str().unwrap()), json!({})).await;
        let (_, mug) = app.get("/v1/rewards/mug", Some(&app.secret_key)).await;
        assert_eq!((mug["available"].as_i64(), mug["redeemed"].as_i64()), (Some(1), Some(1)), "a cancelled unit is back");
        // Restocking adds to what is left; withdrawing never goes below 0.
        assert_eq!(post(&app, "/v1/rewards/mug/stock", json!({"add": 4})).await, (200, json!({"available": 5})));
        let (status, error) = post(&app, "/v1/rewards/mug/stock", json!({"add": -6})).await;
        assert_eq!((status, error["error"]["code"].as_str()), (409, Some("insufficient_stock")));
        assert_eq!(code(&post(&app, "/v1/rewards/coffee/stock", json!({"add": 1})).await), (409, Some("not_counted")));
        assert_eq!(code(&post(&app, "/v1/rewards/nothing/stock", json!({"add": 1})).await), (404, Some("unknown_reward")));
        assert_eq!(code(&post(&app, "/v1/rewards/mug/stock", json!({"add": 0})).await), (422, Some("invalid_add")));
        assert_eq!(post(&app, "/v1/rewards/mug/stock", json!({"add": -4})).await, (200, json!({"available": 1})));

        // Windows and switches.
        let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
        let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
        put(&app, "/v1/rewards/old", json!({"name": "旧券", "kind": "virtual", "points_price": 1, "ends_at": past})).await;
        put(&app, "/v1/rewards/soon", json!({"name": "新券", "kind": "virtual", "points_price": 1, "starts_at": future})).await;
        put(&app, "/v1/rewards/off", json!({"name": "停用", "kind": "virtual", "points_price": 1, "active": false})).await;
        assert_eq!(code(&redeem(&app, "u1", "old", "w1").await), (409, Some("reward_ended")));
        assert_eq!(code(&redeem(&app, "u1", "soon", "w2").await), (409, Some("reward_not_started")));
        assert_eq!(code(&redeem(&app, "u1", "off", "w3").await), (409, Some("reward_inactive")));
        assert_eq!(code(&redeem(&app, "u1", "nothing", "w4").await), (404, Some("unknown_reward")));
        assert_eq!(code(&redeem(&app, "nobody", "mug", "w5").await), (404, Some("unknown_user")));
        assert_eq!(code(&app.get("/v1/redemptions/rdm_999999", Some(&app.secret_key)).await), (404, Some("unknown_redemption")));
        let (_, list) = app.get("/v1/rewards", Some(&app.secret_key)).await;
        assert_eq!(list["rewards"].as_array().unwrap().len(), 5);

        for (path, body, field) in [
            ("/v1/rewards/Bad Key", json!({"name": "x", "kind": "virtual", "points_price": 1}), "reward_key"),
            ("/v1/rewards/x", json!({"name": "", "kind": "virtual", "points_price": 1}), "name"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "voucher", "points_price": 1}), "kind"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "virtual", "points_price": 0}), "points_price"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "virtual", "points_price": "5"}), "points_price"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "coupon_code", "points_price": 5, "stock": 3}), "stock"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "virtual", "points_price": 5, "min_tier": "gold"}), "min_tier"),
            ("/v1/rewards/x", json!({"name": "x", "kind": "virtual", "points_price": 5, "colour": "red"}), "colour"),
        ] {
            let (status, error) = put(&app, path, body.clone()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{path} {body} → {error}");
        }
        assert_eq!(code(&post(&app, "/v1/rewards/mug/codes", json!({"codes": ["X"]})).await), (404, Some("unknown_reward")), "a physical reward has no pool");
        let (status, error) = post(&app, "/v1/rewards/coffee/codes", json!({"codes": ["ok", ""]})).await;
        assert_eq!((status, error["error"]["field"].as_str()), (422, Some("codes[1]")));
        let (_, other_key) = app.other_app().await;
        let (status, _) = app.call(reqwest::Method::GET, &mug_path, &other_key, String::new()).await;
        assert_eq!(status, 404, "another app cannot see this app's redemptions");
    }

    async fn racing_redeemers_never_oversell(app: TestApp) {
        put(&app, "/v1/rewards/bag", json!({"name": "帆布袋", "kind": "physical", "points_price": 10, "stock": 5})).await;
        put(&app, "/v1/rewards/vip", json!({"name": "会员券", "kind": "coupon_code", "points_price": 10})).await;
        post(&app, "/v1/rewards/vip/codes", json!({"codes": ["V1", "V2", "V3"]})).await;
        for u in 0..24 {
            give(&app, &format!("u{u}"), 100).await;
        }
        let answers = futures_util::future::join_all((0..24).flat_map(|u| {
            let app = &app;
            [("bag", format!("b{u}")), ("vip", format!("v{u}"))].map(move |(reward, key)| async move {
                (reward, redeem(app, &format!("u{u}"), reward, &key).await)
            })
        }))
        .await;
        let won = |reward: &str| answers.iter().filter(|(r, (s, _))| *r == reward && *s == 200).count();
        assert_eq!((won("bag"), won("vip")), (5, 3));
        assert!(answers.iter().all(|(_, (s, b))| *s == 200 || b["error"]["code"] == "sold_out"), "every other answer is sold_out");
        let codes: HashSet<&str> = answers.iter().filter_map(|(_, (_, b))| b["code"].as_str()).collect();
        assert_eq!(codes.len(), 3, "each code once");
        let (_, bag) = app.get("/v1/rewards/bag", Some(&app.secret_key)).await;
        assert_eq!((bag["available"].as_i64(), bag["redeemed"].as_i64()), (Some(0), Some(5)));
        let mut total = 0;
        for u in 0..24 {
            total += balance(&app, &format!("u{u}")).await;
        }
        assert_eq!(total, 24 * 100 - 8 * 10, "only the winners paid");
        // Two redemptions with one key at once: one redemption.
        put(&app, "/v1/rewards/pen", json!({"name": "笔", "kind": "virtual", "points_price": 10})).await;
        let (a, b) = tokio::join!(redeem(&app, "u0", "pen", "same"), redeem(&app, "u0", "pen", "same"));
        assert_eq!((a.0, b.0), (200, 200));
        assert_eq!(a.1["redemption_id"], b.1["redemption_id"]);
    }

    async fn tiers_follow_growth_and_gate_rewards(app: TestApp) {
        give(&app, "u1", 1000).await;
        assert_eq!(code(&app.get("/v1/tiers", Some(&app.secret_key)).await), (404, Some("no_tiers")));
        let (_, none) = app.get("/v1/users/u1/tier", Some(&app.secret_key)).await;
        assert_eq!(none["tier"], Value::Null);
        let config = json!({
            "tiers": [
                {"key": "bronze", "name": "青铜", "threshold": 0},
                {"key": "silver", "name": "白银", "threshold": 500, "multiplier_permille": 1200},
                {"key": "gold", "name": "黄金", "threshold": 2000, "keep_threshold": 1500, "multiplier_permille": 1500}
            ],
            "window": {"kind": "calendar_year"}, "downgrade": "one_tier", "grace_days": 30
        });
        for (body, field) in [
            (json!({"tiers": [{"key": "a", "name": "A", "threshold": 10}], "window": {"kind": "lifetime"}, "downgrade": "recompute", "grace_days": 0}), "tiers[0].threshold"),
            (json!({"tiers": [{"key": "a", "name": "A", "threshold": 0}], "window": {"kind": "weekly"}, "downgrade": "recompute", "grace_days": 0}), "window.kind"),
            (json!({"tiers": [{"key": "a", "name": "A", "threshold": "0"}], "window": {"kind": "lifetime"}, "downgrade": "recompute", "grace_days": 0}), "tiers[0].threshold"),
            (json!({"tiers": [], "window": {"kind": "lifetime"}, "downgrade": "recompute", "grace_days": 0, "extra": 1}), "extra"),
        ] {
            let (status, error) = put(&app, "/v1/tiers", body.clone()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{body} → {error}");
        }
        let (status, stored) = put(&app, "/v1/tiers", config.clone()).await;
        assert_eq!((status, stored["version"].as_i64()), (200, Some(1)), "{stored}");
        let (_, member) = app.get("/v1/users/u1/tier", Some(&app.secret_key)).await;
        assert_eq!((member["tier"].as_str(), member["next_tier"].as_str(), member["growth_to_next"].as_i64()), (Some("bronze"), Some("silver"), Some(500)), "{member}");
        let (status, _) = put(&app, "/v1/rewards/lounge", json!({"name": "贵宾室", "kind": "virtual", "points_price": 100, "min_tier": "gold"})).await;
        assert_eq!(status, 200);
        assert_eq!(code(&redeem(&app, "u1", "lounge", "l1").await), (409, Some("tier_required")));
        let grow = |amount: i64, key: &str| post(&app, "/v1/users/u1/growth", json!({"amount": amount, "reason": "order paid", "idempotency_key": key, "cause": {"type": "order", "id": key}}));
        let (status, member) = grow(2500, "g1").await;
        assert_eq!((status, member["tier"].as_str(), member["multiplier_permille"].as_u64()), (200, Some("gold"), Some(1500)), "{member}");
        assert_eq!(grow(2500, "g1").await.1, member, "a retried growth counts once");
        assert_eq!(code(&grow(2400, "g1").await), (409, Some("idempotency_key_reused")));
        let (_, member) = app.get("/v1/users/u1/tier", Some(&app.secret_key)).await;
        assert_eq!((member["lifetime_growth"].as_i64(), member["window_growth"].as_i64()), (Some(2500), Some(2500)));
        assert_eq!(balance(&app, "u1").await, 1000, "growth is not spendable points");
        let (status, _) = redeem(&app, "u1", "lounge", "l2").await;
        assert_eq!(status, 200);
        // A stricter configuration does not demote the member on the spot.
        let mut stricter = config.clone();
        stricter["tiers"][2]["threshold"] = json!(5000);
        stricter["tiers"][2]["keep_threshold"] = json!(4000);
        let (_, v2) = put(&app, "/v1/tiers", stricter).await;
        assert_eq!(v2["version"], 2);
        let (_, member) = app.get("/v1/users/u1/tier", Some(&app.secret_key)).await;
        assert_eq!(member["tier"], "gold", "{member}");
        assert!(member["grace_until"].is_string(), "kept under a grace: {member}");
        for (body, field) in [
            (json!({"amount": 0, "reason": "x", "idempotency_key": "z"}), "amount"),
            (json!({"amount": 5, "reason": "", "idempotency_key": "z"}), "reason"),
            (json!({"amount": 5, "reason": "x"}), "idempotency_key"),
        ] {
            let (status, error) = post(&app, "/v1/users/u1/growth", body.clone()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{body}");
        }
        assert_eq!(code(&post(&app, "/v1/users/nobody/growth", json!({"amount": 5, "reason": "x", "idempotency_key": "z"})).await), (404, Some("unknown_user")));
    }

    async fn a_grace_that_ends_moves_the_stored_tier_down(app: TestApp) {
        use huiliu_store::Store;
        app.put_user("u1", "{}").await;
        put(&app, "/v1/tiers", json!({
            "tiers": [{"key": "bronze", "name": "青铜", "threshold": 0},
                      {"key": "silver", "name": "白银", "threshold": 500},
                      {"key": "gold", "name": "黄金", "threshold": 2000, "keep_threshold": 1500}],
            "window": {"kind": "lifetime"}, "downgrade": "one_tier", "grace_days": 30
        })).await;
        let grow = |amount: i64, key: &str| post(&app, "/v1/users/u1/growth", json!({"amount": amount, "reason": "order", "idempotency_key": key}));
        assert_eq!(grow(2500, "g1").await.1["tier"], "gold");
        // A refund takes 1,200 back: below the keep threshold, gold is kept under a grace.
        let (_, member) = grow(-1200, "g2").await;
        assert_eq!(member["tier"], "gold", "{member}");
        assert!(member["grace_until"].is_string(), "{member}");
        let now = huiliu_domain::time::to_micros(jiff::Timestamp::now());
        assert_eq!(app.store.tiers_sweep(now, 100).await.unwrap(), 0, "the grace runs 30 days");
        let later = now + 40 * 86_400_000_000;
        assert_eq!(app.store.tiers_sweep(later, 100).await.unwrap(), 1);
        let user = huiliu_domain::ids::UserId::parse("u1").unwrap();
        let stored = app.store.membership(&app.app, &user, later).await.unwrap().unwrap();
        assert_eq!((stored.tier.as_deref(), stored.grace_until_us), (Some("silver"), None), "one tier down once the grace ended");
        assert_eq!(app.store.tiers_sweep(later, 100).await.unwrap(), 0, "nothing left to judge");
    }
}
