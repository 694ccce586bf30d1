//! Random and malformed input on every endpoint: always an answer below 500, never a crash,
//! and what was stored before stays as it was.

use crate::helpers::*;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                "(id|user_id|name|time|props|events|openid|attributes|[a-z]{1,6})",
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn random_input_on_every_endpoint_is_answered_below_500() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime
        .block_on(spawn_app(Backend::Sqlite, "Asia/Shanghai"))
        .unwrap();
    runtime.block_on(app.post_events(serde_json::json!([event("kept", "kept-user")])));
    let config = ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        value in json_value(),
        path_bytes in proptest::collection::vec(any::<u8>(), 1..40),
    )| {
        runtime.block_on(async {
            let key = app.secret_key.clone();
            let as_batch = serde_json::json!({"events": [value.clone()]}).to_string();
            for body in [bytes.clone(), value.to_string().into_bytes(), as_batch.into_bytes()] {
                let (status, answer) = app.post_events_raw(&key, body.clone()).await;
                assert!(status < 500, "POST /v1/events {status} for {:?}: {answer}", String::from_utf8_lossy(&body));
                // Any bytes, percent-encoded: invalid UTF-8 included.
                let encoded: String = path_bytes.iter().map(|b| format!("%{b:02X}")).collect();
                let response = app
                    .client
                    .put(format!("{}/v1/users/{encoded}", app.base))
                    .bearer_auth(&key)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().as_u16() < 500, "PUT user {}", response.status());
                for path in [format!("/v1/users/{encoded}"), format!("/v1/events/{encoded}")] {
                    let (status, answer) = app.get(&path, Some(&key)).await;
                    assert!(status < 500, "GET {path}: {status}");
                    assert!(answer["error"]["code"].is_string() || status == 200, "GET {path}: {answer}");
                }
                // Random query strings on every report, and random settings bodies.
                for report in ["active", "retention", "lifecycle", "one-and-done", "funnel"] {
                    for query in [
                        format!("from={encoded}&to={encoded}"),
                        format!("max_day={encoded}&period={encoded}&mode={encoded}"),
                        format!("steps={encoded}&window={encoded}"),
                        format!("min_age_days={encoded}"),
                        format!("{encoded}={encoded}"),
                    ] {
                        let path = format!("/v1/analytics/{report}?{query}");
                        let (status, answer) = app.get(&path, Some(&key)).await;
                        assert!(status < 500, "GET {path}: {status}");
                        assert!(answer["error"]["code"].is_string() || status == 200, "GET {path}: {answer}");
                    }
                }
                let response = app
                    .client
                    .put(format!("{}/v1/analytics/settings", app.base))
                    .bearer_auth(&key)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().as_u16() < 500, "PUT settings {}", response.status());
                for (method, path) in [
                    (reqwest::Method::PUT, format!("/v1/templates/{encoded}")),
                    (reqwest::Method::POST, format!("/v1/templates/{encoded}/check")),
                    (reqwest::Method::PUT, "/v1/templates/fuzz".to_string()),
                    (reqwest::Method::POST, "/v1/subscriptions".to_string()),
                    (reqwest::Method::PUT, "/v1/wechat/settings".to_string()),
                    (reqwest::Method::POST, "/v1/templates/fuzz/check".to_string()),
                    (reqwest::Method::POST, "/v1/messages".to_string()),
                    (reqwest::Method::POST, "/v1/points/transactions".to_string()),
                    (reqwest::Method::PUT, "/v1/points/settings".to_string()),
                    (reqwest::Method::GET, format!("/v1/users/{encoded}/points")),
                    (reqwest::Method::GET, format!("/v1/messages/{encoded}")),
                    (reqwest::Method::POST, format!("/wechat/{}/callback?signature=x&timestamp=1&nonce=n", app.app.id)),
                    (reqwest::Method::POST, format!("/wechat/{encoded}/callback")),
                ] {
                    let response = app
                        .client
                        .request(method, format!("{}{path}", app.base))
                        .bearer_auth(&key)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
                }
            }
        });
    });
    let (status, kept) = runtime.block_on(app.get("/v1/users/kept-user", Some(&app.secret_key)));
    assert_eq!((status, kept["event_count"].as_i64()), (200, Some(1)));
    let (status, settings) =
        runtime.block_on(app.get("/v1/analytics/settings", Some(&app.secret_key)));
    assert_eq!(status, 200, "settings still read: {settings}");
}
