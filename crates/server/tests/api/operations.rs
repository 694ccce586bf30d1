use crate::both_stores;
use crate::helpers::*;

both_stores! {
    async fn probes_answer_and_unknown_routes_are_json_errors(app: TestApp) {
        let (status, body) = app.get("/healthz", None).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
        let (status, body) = app.get("/readyz", None).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
        let (status, body) = app.get("/v1/nothing-here", None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
        let response = app.client.delete(format!("{}/v1/events", app.base)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let Some(app) = spawn_app(Backend::Sqlite, "Asia/Shanghai").await else {
        return;
    };
    let (status, doc) = app.get("/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/v1/events", "post"),
        ("/v1/events/{event_id}", "get"),
        ("/v1/users/{user_id}", "get"),
        ("/v1/users/{user_id}", "put"),
        ("/v1/openapi.json", "get"),
        ("/v1/points/transactions", "post"),
        ("/v1/points/transactions/{transaction_id}/reverse", "post"),
        ("/v1/points/holds", "post"),
        ("/v1/points/holds/{transaction_id}/capture", "post"),
        ("/v1/points/holds/{transaction_id}/release", "post"),
        ("/v1/points/settings", "put"),
        ("/v1/users/{user_id}/points", "get"),
        ("/v1/users/{user_id}/points/history", "get"),
        ("/v1/loyalty/liability", "get"),
        ("/v1/loyalty/rules", "get"),
        ("/v1/loyalty/rules/{rule_key}", "put"),
        ("/v1/loyalty/rules/{rule_key}", "delete"),
        ("/v1/loyalty/tasks/{task_key}", "put"),
        ("/v1/loyalty/sign-in", "put"),
        ("/v1/users/{user_id}/sign-in", "post"),
        ("/v1/users/{user_id}/tasks", "get"),
        ("/v1/tiers", "put"),
        ("/v1/users/{user_id}/tier", "get"),
        ("/v1/users/{user_id}/growth", "post"),
        ("/v1/rewards", "get"),
        ("/v1/rewards/{reward_key}", "put"),
        ("/v1/rewards/{reward_key}/codes", "post"),
        ("/v1/rewards/{reward_key}/stock", "post"),
        ("/v1/redemptions", "post"),
        ("/v1/redemptions/{redemption_id}", "get"),
        ("/v1/redemptions/{redemption_id}/cancel", "post"),
        ("/v1/redemptions/{redemption_id}/fulfil", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is undocumented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["secret_key"].is_object());
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let Some(app) = spawn_app(Backend::Sqlite, "Asia/Shanghai").await else {
        return;
    };
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-request-id").is_some());
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-1");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_events_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        huiliu_server::open_store(&format!("sqlite://{}", dir.path().join("m.db").display()))
            .await
            .unwrap();
    let plan =
        huiliu_domain::apps::NewApp::generate("m", Default::default(), &mut rand::rng()).unwrap();
    huiliu_store::Store::create_app(&store, &plan)
        .await
        .unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, metrics_addr) = (api.local_addr().unwrap(), metrics.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(huiliu_server::serve(
        store,
        api,
        Some(metrics),
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let body = serde_json::json!({"events": [event("m1", "u"), event("m1", "u"), {"id": "bad"}]});
    client
        .post(format!("http://{api_addr}/v1/events"))
        .bearer_auth(&plan.secret_key.plaintext)
        .json(&body)
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{api_addr}/v1/users/u-{}", 12345))
        .send()
        .await
        .unwrap();
    let text = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"huiliu_http_requests_total{method="POST",route="/v1/events",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/v1/users/{user_id}",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"huiliu_events_total{source="server",outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"huiliu_events_total{source="server",outcome="duplicate"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"huiliu_events_total{source="server",outcome="rejected"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"huiliu_store_operation_duration_seconds_count{operation="ingest_events"} 1"#
        ),
        "{text}"
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
