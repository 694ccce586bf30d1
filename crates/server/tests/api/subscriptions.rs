use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};

async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let key = app.secret_key.clone();
    app.call(
        reqwest::Method::POST,
        "/v1/subscriptions",
        &key,
        body.to_string(),
    )
    .await
}

async fn define(app: &TestApp, id: &str, kind: &str) {
    let response = app
        .client
        .put(format!("{}/v1/templates/{id}", app.base))
        .bearer_auth(&app.secret_key)
        .body(
            json!({"title": "t", "kind": kind, "fields": [{"key": "thing1", "name": "x"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

both_stores! {
    async fn acceptances_grant_one_time_credits_and_answers_are_remembered(app: TestApp) {
        define(&app, "ship", "one_time").await;
        define(&app, "bill", "long_term").await;
        let (status, body) = post(&app, json!({"user_id": "u1", "results": {"ship": "accept", "bill": "accept"}})).await;
        assert_eq!((status, &body), (200, &json!({"credits": {"bill": 0, "ship": 1}})));
        let (_, body) = post(&app, json!({"user_id": "u1", "results": {"ship": "acceptWithAudio"}})).await;
        assert_eq!(body, json!({"credits": {"ship": 2}}));
        let (_, body) = post(&app, json!({"user_id": "u1", "results": {"ship": "reject", "bill": "filter"}})).await;
        assert_eq!(body, json!({"credits": {"bill": 0, "ship": 2}}), "a rejection keeps earlier credits");
        let (status, listed) = app.get("/v1/users/u1/subscriptions", Some(&app.secret_key)).await;
        assert_eq!(status, 200);
        let templates = listed["templates"].as_array().unwrap();
        assert_eq!((templates[0]["template_id"].as_str(), templates[0]["long_term"].as_bool(), templates[0]["status"].as_str()), (Some("bill"), Some(true), Some("accept")));
        assert_eq!((templates[1]["credits"].as_u64(), templates[1]["status"].as_str()), (Some(2), Some("reject")));
        // Reporting created the user.
        assert_eq!(app.get("/v1/users/u1", Some(&app.secret_key)).await.0, 200);
        // Another app sees none of it.
        let (_, other_key) = app.other_app().await;
        assert_eq!(app.get("/v1/users/u1/subscriptions", Some(&other_key)).await.0, 404);
    }

    async fn a_retried_report_counts_once_and_a_reused_key_is_refused(app: TestApp) {
        define(&app, "ship", "one_time").await;
        let report = json!({"user_id": "u2", "results": {"ship": "accept"}, "idempotency_key": "popup-42"});
        let first = post(&app, report.clone()).await;
        let again = post(&app, report).await;
        assert_eq!(first, (200, json!({"credits": {"ship": 1}})));
        assert_eq!(again, first, "the same answer, not a second credit");
        let (status, body) = post(&app, json!({"user_id": "u2", "results": {"ship": "reject"}, "idempotency_key": "popup-42"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));
        let (_, listed) = app.get("/v1/users/u2/subscriptions", Some(&app.secret_key)).await;
        assert_eq!(listed["templates"][0]["credits"], 1);
    }

    async fn concurrent_acceptances_are_all_counted(app: TestApp) {
        define(&app, "ship", "one_time").await;
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (client, base, key) = (app.client.clone(), app.base.clone(), app.secret_key.clone());
            tasks.push(tokio::spawn(async move {
                client.post(format!("{base}/v1/subscriptions")).bearer_auth(key)
                    .body(json!({"user_id": "busy", "results": {"ship": "accept"}}).to_string())
                    .send().await.unwrap().status().as_u16()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
        let (_, listed) = app.get("/v1/users/busy/subscriptions", Some(&app.secret_key)).await;
        assert_eq!(listed["templates"][0]["credits"], 24);
    }

    async fn bad_reports_name_the_field_and_change_nothing(app: TestApp) {
        define(&app, "ship", "one_time").await;
        for (body, status, field) in [
            (json!({"user_id": "u3", "results": {"nope": "accept"}}), 422, "results.nope"),
            (json!({"user_id": "u3", "results": {"ship": "maybe"}}), 422, "results.ship"),
            (json!({"user_id": "u3", "results": {"ship": 1}}), 422, "results.ship"),
            (json!({"user_id": "u3", "results": {}}), 422, "results"),
            (json!({"results": {"ship": "accept"}}), 422, "user_id"),
            (json!({"user_id": "", "results": {"ship": "accept"}}), 422, "user_id"),
            (json!({"user_id": "u3", "results": {"ship": "accept"}, "extra": 1}), 422, "extra"),
            (json!({"user_id": "u3", "results": {"ship": "accept"}, "idempotency_key": ""}), 422, "idempotency_key"),
        ] {
            let (got, answer) = post(&app, body.clone()).await;
            assert_eq!((got, answer["error"]["field"].as_str()), (status, Some(field)), "{body}: {answer}");
        }
        assert_eq!(app.get("/v1/users/u3/subscriptions", Some(&app.secret_key)).await.0, 404, "nothing was recorded");
        let response = app.client.post(format!("{}/v1/subscriptions", app.base)).bearer_auth(&app.publishable_key)
            .body(json!({"user_id": "u3", "results": {"ship": "accept"}}).to_string()).send().await.unwrap();
        assert_eq!(response.status(), 403);
    }
}
