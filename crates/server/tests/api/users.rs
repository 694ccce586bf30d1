use crate::both_stores;
use crate::helpers::*;
use serde_json::json;

both_stores! {
    async fn unknown_users_are_404_and_put_creates_and_merges(app: TestApp) {
        let (status, body) = app.get("/v1/users/nobody", Some(&app.secret_key)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_user")));

        let (status, created) = app
            .put_user("u-1", r#"{"openid": "oA1", "attributes": {"city": "杭州", "vip": 1}}"#)
            .await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["openid"], "oA1");
        assert_eq!(created["first_seen"], serde_json::Value::Null);
        let (_, merged) = app.put_user("u-1", r#"{"unionid": "uX", "attributes": {"vip": 2}}"#).await;
        assert_eq!(merged["attributes"], json!({"city": "杭州", "vip": 2}));
        assert_eq!(merged["openid"], "oA1", "absent fields are kept");
        assert_eq!(merged["unionid"], "uX");
        let (_, again) = app.put_user("u-1", r#"{"unionid": "uX", "attributes": {"vip": 2}}"#).await;
        assert_eq!(again, merged, "repeating an update changes nothing");
        let (_, read) = app.get("/v1/users/u-1", Some(&app.secret_key)).await;
        assert_eq!(read, merged);
    }

    async fn first_and_last_seen_are_event_times_in_the_apps_zone(app: TestApp) {
        // Computed once: a second call could fall in the next second on a busy machine.
        let early = time_ago(30, "Z");
        app.post_events(json!([
            {"id": "late", "user_id": "w", "name": "launch", "time": time_ago(2, "+08:00")},
            {"id": "early", "user_id": "w", "name": "launch", "time": early},
        ]))
        .await;
        let (_, user) = app.get("/v1/users/w", Some(&app.secret_key)).await;
        assert_eq!(user["event_count"], 2);
        let first = user["first_seen"].as_str().unwrap();
        let last = user["last_seen"].as_str().unwrap();
        assert!(first.ends_with("+08:00") && last.ends_with("+08:00"), "{user}");
        assert_eq!(
            first.parse::<jiff::Timestamp>().unwrap(),
            early.parse::<jiff::Timestamp>().unwrap()
        );
        assert!(first < last);
    }

    async fn bad_user_input_names_the_field_and_changes_nothing(app: TestApp) {
        app.put_user("keep", r#"{"attributes": {"a": 1}}"#).await;
        let long = "用".repeat(129);
        let (status, body) = app.get(&format!("/v1/users/{long}"), Some(&app.secret_key)).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("user_id")));
        for (payload, status, field) in [
            (r#"{"openid": 5}"#, 422, Some("openid")),
            (r#"{"attributes": [1]}"#, 422, Some("attributes")),
            (r#"{"nickname": "x"}"#, 422, Some("nickname")),
            (r#"{"attributes": "#, 400, None),
            (r#"["x"]"#, 422, None),
        ] {
            let (got, body) = app.put_user("keep", payload).await;
            assert_eq!(got, status, "{payload}: {body}");
            assert_eq!(body["error"]["field"].as_str(), field, "{payload}: {body}");
        }
        let (_, body) = app.put_user("keep", &format!(r#"{{"attributes": {{"blob": "{}"}}}}"#, "x".repeat(20_000))).await;
        assert_eq!(body["error"]["code"], "too_large");
        let (_, kept) = app.get("/v1/users/keep", Some(&app.secret_key)).await;
        assert_eq!(kept["attributes"], json!({"a": 1}));
    }

    async fn user_endpoints_need_the_secret_key(app: TestApp) {
        app.put_user("s", "{}").await;
        let (status, _) = app.get("/v1/users/s", Some(&app.publishable_key)).await;
        assert_eq!(status, 403);
        let (status, _) = app.get("/v1/users/s", None).await;
        assert_eq!(status, 401);
        let response = app
            .client
            .put(format!("{}/v1/users/s", app.base))
            .bearer_auth(&app.publishable_key)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
    }
}

fn time_ago(hours: i64, offset: &str) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours);
    let at = jiff::Timestamp::from_second(at.as_second()).unwrap();
    if offset == "Z" {
        at.to_string()
    } else {
        at.to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }
}

#[tokio::test]
async fn an_app_in_another_zone_sees_times_in_its_own_offset() {
    let Some(app) = spawn_app(Backend::Sqlite, "America/Los_Angeles").await else {
        return;
    };
    app.post_events(
        json!([{"id": "la", "user_id": "z", "name": "launch", "time": time_ago(1, "Z")}]),
    )
    .await;
    let (_, user) = app.get("/v1/users/z", Some(&app.secret_key)).await;
    let first = user["first_seen"].as_str().unwrap();
    assert!(
        first.ends_with("-08:00") || first.ends_with("-07:00"),
        "{first}"
    );
}
