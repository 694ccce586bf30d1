use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    app.call(method, path, key, body.to_string()).await
}

fn shipping() -> Value {
    json!({"title": "订单发货提醒", "kind": "one_time", "fields": [
        {"key": "thing1", "name": "商品名称"},
        {"key": "time2", "name": "发货时间"},
        {"key": "enum3", "name": "状态", "values": ["已发货", "已签收"]}
    ]})
}

both_stores! {
    async fn templates_are_stored_with_field_types_and_replaced_whole(app: TestApp) {
        let key = app.secret_key.clone();
        let (status, stored) = send(&app, reqwest::Method::PUT, "/v1/templates/tmpl-ship", &key, shipping()).await;
        assert_eq!(status, 200, "{stored}");
        assert_eq!(stored["fields"][1]["kind"], "time");
        // The same PUT again changes nothing; a new definition replaces the old one.
        let (status, again) = send(&app, reqwest::Method::PUT, "/v1/templates/tmpl-ship", &key, shipping()).await;
        assert_eq!((status, &again), (200, &stored));
        let (_, listed) = app.get("/v1/templates", Some(&key)).await;
        assert_eq!(listed["templates"].as_array().unwrap().len(), 1);
        let smaller = json!({"title": "发货", "kind": "long_term", "fields": [{"key": "thing1", "name": "商品"}]});
        assert_eq!(send(&app, reqwest::Method::PUT, "/v1/templates/tmpl-ship", &key, smaller).await.0, 200);
        let (status, read) = app.get("/v1/templates/tmpl-ship", Some(&key)).await;
        assert_eq!((status, read["kind"].as_str(), read["fields"].as_array().unwrap().len()), (200, Some("long_term"), 1));

        // Tenants: another app neither sees nor reads it.
        let (_, other_key) = app.other_app().await;
        let (status, _) = app.get("/v1/templates/tmpl-ship", Some(&other_key)).await;
        assert_eq!(status, 404);
        let (_, theirs) = app.get("/v1/templates", Some(&other_key)).await;
        assert_eq!(theirs["templates"], json!([]));
        let (status, _) = app.get("/v1/templates", Some(&app.publishable_key)).await;
        assert_eq!(status, 403);
    }

    async fn bad_definitions_are_refused_and_keep_what_was_stored(app: TestApp) {
        let key = app.secret_key.clone();
        assert_eq!(send(&app, reqwest::Method::PUT, "/v1/templates/t1", &key, shipping()).await.0, 200);
        for (body, field) in [
            (json!({"title": "x", "kind": "one_time", "fields": [{"key": "money1", "name": "x"}]}), "fields[0].key"),
            (json!({"title": "x", "kind": "one_time", "fields": [{"key": "enum1", "name": "x"}]}), "fields[0].values"),
            (json!({"title": "x", "kind": "sometimes", "fields": [{"key": "thing1"}]}), "body"),
            (json!({"title": "", "kind": "one_time", "fields": [{"key": "thing1"}]}), "title"),
        ] {
            let (status, answer) = send(&app, reqwest::Method::PUT, "/v1/templates/t1", &key, body).await;
            assert_eq!((status, answer["error"]["field"].as_str()), (422, Some(field)), "{answer}");
        }
        let (status, answer) = send(&app, reqwest::Method::PUT, "/v1/templates/has%20space", &key, shipping()).await;
        assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("template_id")));
        let (_, kept) = app.get("/v1/templates/t1", Some(&key)).await;
        assert_eq!(kept["fields"].as_array().unwrap().len(), 3, "nothing stored was lost");
    }

    async fn message_data_is_checked_in_characters_against_each_field_rule(app: TestApp) {
        let key = app.secret_key.clone();
        assert_eq!(send(&app, reqwest::Method::PUT, "/v1/templates/t1", &key, shipping()).await.0, 200);
        let twenty = "您的订单已发货，请注意查收哦亲爱的用户们"; // 20 characters, 60 bytes
        let ok = json!({"data": {"thing1": twenty, "time2": "2026年11月24日 15:01", "enum3": "已发货"}});
        let (status, answer) = send(&app, reqwest::Method::POST, "/v1/templates/t1/check", &key, ok).await;
        assert_eq!((status, &answer), (200, &json!({"ok": true})));
        for (data, field, code) in [
            (json!({"thing1": format!("{twenty}呀"), "time2": "15:01", "enum3": "已发货"}), "data.thing1", "invalid_value"),
            (json!({"thing1": "杯子", "time2": "3pm", "enum3": "已发货"}), "data.time2", "invalid_value"),
            (json!({"thing1": "杯子", "time2": "15:01", "enum3": "已取消"}), "data.enum3", "invalid_value"),
            (json!({"thing1": "杯子", "time2": "15:01"}), "data.enum3", "missing_field"),
            (json!({"thing1": "杯子", "time2": "15:01", "enum3": "已发货", "thing9": "x"}), "data.thing9", "unknown_field"),
        ] {
            let (status, answer) = send(&app, reqwest::Method::POST, "/v1/templates/t1/check", &key, json!({"data": data})).await;
            assert_eq!(
                (status, answer["error"]["field"].as_str(), answer["error"]["code"].as_str()),
                (422, Some(field), Some(code)),
                "{answer}"
            );
        }
        let (status, _) = send(&app, reqwest::Method::POST, "/v1/templates/nope/check", &key, json!({"data": {}})).await;
        assert_eq!(status, 404);
    }
}

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

both_stores! {
    async fn wechat_settings_are_write_only_and_sealed_at_rest(app: TestApp) {
        let key = app.secret_key.clone();
        let (status, _) = app.get("/v1/wechat/settings", Some(&key)).await;
        assert_eq!(status, 404);
        let body = json!({"appid": APPID, "secret": SECRET, "token": "huiliuToken1", "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"});
        let (status, view) = send(&app, reqwest::Method::PUT, "/v1/wechat/settings", &key, body.clone()).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view, json!({"appid": APPID, "secret_set": true, "token_set": true, "aes_key_set": true, "api_base": null}));
        assert!(!view.to_string().contains(SECRET));
        let (_, read) = app.get("/v1/wechat/settings", Some(&key)).await;
        assert_eq!(read, view);

        // At rest the secret is sealed; only the AppID is plain.
        let stored = huiliu_store::Store::get_wechat_settings(&app.store, &app.app).await.unwrap().unwrap();
        assert_eq!(stored.appid, APPID);
        for sealed in [&stored.secret_sealed, stored.token_sealed.as_ref().unwrap(), stored.aes_key_sealed.as_ref().unwrap()] {
            assert!(!sealed.windows(12).any(|w| SECRET.as_bytes().windows(12).any(|s| s == w)));
            assert!(!String::from_utf8_lossy(sealed).contains("huiliuToken1"));
        }

        for (bad, field) in [
            (json!({"appid": "wx1", "secret": SECRET}), "appid"),
            (json!({"appid": APPID, "secret": "nothex"}), "secret"),
            (json!({"appid": APPID, "secret": SECRET, "api_base": "ftp://x"}), "api_base"),
        ] {
            let (status, answer) = send(&app, reqwest::Method::PUT, "/v1/wechat/settings", &key, bad).await;
            assert_eq!((status, answer["error"]["field"].as_str()), (422, Some(field)), "{answer}");
        }
        let (_, kept) = app.get("/v1/wechat/settings", Some(&key)).await;
        assert_eq!(kept, view, "a refused update keeps the stored settings");

        let (_, other_key) = app.other_app().await;
        assert_eq!(app.get("/v1/wechat/settings", Some(&other_key)).await.0, 404);
        assert_eq!(app.get("/v1/wechat/settings", Some(&app.publishable_key)).await.0, 403);
    }
}

mod sync_from_wechat {
    use super::*;
    use huiliu_domain::templates::Template;
    use huiliu_wechat::fake::{FakeWechat, TokenPolicy};

    const SYNC_APPID: &str = "wx4f28b4b2dcaafca1";
    const SYNC_SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

    crate::both_stores! {
        async fn templates_sync_from_wechat_with_enum_values(app: TestApp) {
            let fake = FakeWechat::start("127.0.0.1:0", SYNC_APPID, SYNC_SECRET, TokenPolicy::default()).await.unwrap();
            let key = app.secret_key.clone();
            let (status, _) = app.call(reqwest::Method::POST, "/v1/wechat/templates/sync", &key, "").await;
            assert_eq!(status, 409, "no WeChat settings yet");
            let settings = json!({"appid": SYNC_APPID, "secret": SYNC_SECRET, "api_base": fake.base_url()});
            app.call(reqwest::Method::PUT, "/v1/wechat/settings", &key, settings.to_string()).await;
            let ship = json!({"title": "发货通知", "kind": "one_time", "fields": [
                {"key": "thing1", "name": "商品"}, {"key": "enum2", "name": "状态", "values": ["已发货", "已签收"]}]});
            let remind = json!({"title": "续费提醒", "kind": "long_term", "fields": [{"key": "date1", "name": "到期日"}]});
            fake.add_template(Template::parse("tmpl-ship", &ship).unwrap());
            fake.add_template(Template::parse("tmpl-remind", &remind).unwrap());
            let local_only = json!({"title": "旧模板", "kind": "one_time", "fields": [{"key": "thing1", "name": "内容"}]});
            app.call(reqwest::Method::PUT, "/v1/templates/tmpl-old", &key, local_only.to_string()).await;

            let (status, result) = app.call(reqwest::Method::POST, "/v1/wechat/templates/sync", &key, "").await;
            assert_eq!(status, 200, "{result}");
            assert_eq!(result["updated"], json!(["tmpl-remind", "tmpl-ship"]));
            assert_eq!(result["missing_in_wechat"], json!(["tmpl-old"]));
            let (_, synced) = app.get("/v1/templates/tmpl-ship", Some(&key)).await;
            assert_eq!(synced["fields"][1]["values"], json!(["已发货", "已签收"]), "{synced}");
            let (_, synced) = app.get("/v1/templates/tmpl-remind", Some(&key)).await;
            assert_eq!(synced["kind"], "long_term");
            // The synced enum rule applies to messages' data.
            let (status, error) = app.call(reqwest::Method::POST, "/v1/templates/tmpl-ship/check", &key,
                json!({"data": {"thing1": "耳机", "enum2": "已退货"}}).to_string()).await;
            assert_eq!((status, error["error"]["field"].as_str()), (422, Some("data.enum2")));

            // Again: nothing changed. A token WeChat stopped honouring is replaced once.
            fake.expire_token();
            let (status, result) = app.call(reqwest::Method::POST, "/v1/wechat/templates/sync", &key, "").await;
            assert_eq!(status, 200, "{result}");
            assert_eq!(result["unchanged"], json!(["tmpl-remind", "tmpl-ship"]));
            assert_eq!(fake.tokens_issued(), 2);
            // WeChat unreachable: 502, and the templates stay as they were.
            let unreachable = json!({"appid": SYNC_APPID, "secret": SYNC_SECRET, "api_base": "http://127.0.0.1:1"});
            app.call(reqwest::Method::PUT, "/v1/wechat/settings", &key, unreachable.to_string()).await;
            let (status, error) = app.call(reqwest::Method::POST, "/v1/wechat/templates/sync", &key, "").await;
            assert_eq!((status, error["error"]["code"].as_str()), (502, Some("wechat_error")), "{error}");
            let (_, list) = app.get("/v1/templates", Some(&key)).await;
            assert_eq!(list["templates"].as_array().unwrap().len(), 3);
        }
    }
}
