//! The fake WeChat behaves as WeChat documents: tokens, template list, sends and their errcodes.

use huiliu_domain::templates::Template;
use huiliu_wechat::fake::{FakeWechat, Fault, TokenPolicy};
use serde_json::{json, Value};
use std::time::Duration;

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

async fn fake(policy: TokenPolicy) -> (FakeWechat, reqwest::Client) {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, policy)
        .await
        .unwrap();
    let template = Template::parse(
        "tmpl-ship",
        &json!({"title": "发货提醒", "kind": "one_time", "fields": [
            {"key": "thing1", "name": "商品"}, {"key": "enum2", "name": "状态", "values": ["已发货"]}]}),
    )
    .unwrap();
    fake.add_template(template);
    (fake, reqwest::Client::new())
}

async fn stable_token(fake: &FakeWechat, client: &reqwest::Client, force: bool) -> Value {
    client
        .post(format!("{}/cgi-bin/stable_token", fake.base_url()))
        .json(&json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": force}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn send(
    fake: &FakeWechat,
    client: &reqwest::Client,
    token: &str,
    openid: &str,
    thing: &str,
) -> Value {
    client
        .post(format!(
            "{}/cgi-bin/message/subscribe/send?access_token={token}",
            fake.base_url()
        ))
        .json(
            &json!({"touser": openid, "template_id": "tmpl-ship", "page": "pages/order?id=1",
                      "data": {"thing1": {"value": thing}, "enum2": {"value": "已发货"}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn stable_tokens_repeat_in_normal_mode_and_rotate_when_forced() {
    let (fake, client) = fake(TokenPolicy {
        lifetime: Duration::from_secs(60),
        grace: Duration::ZERO,
    })
    .await;
    let first = stable_token(&fake, &client, false).await;
    let again = stable_token(&fake, &client, false).await;
    assert_eq!(first["access_token"], again["access_token"]);
    assert!(first["expires_in"].as_u64().unwrap() <= 60);
    let forced = stable_token(&fake, &client, true).await;
    assert_ne!(forced["access_token"], first["access_token"]);
    assert_eq!(fake.tokens_issued(), 2);
    // With no grace period the rotated-out token is refused at once.
    let old = first["access_token"].as_str().unwrap();
    assert_eq!(
        send(&fake, &client, old, "o1", "杯子").await["errcode"],
        40001
    );
    let wrong: Value = client
        .post(format!("{}/cgi-bin/stable_token", fake.base_url()))
        .json(&json!({"grant_type": "client_credential", "appid": APPID, "secret": "0".repeat(32)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["errcode"], 40125);
}

#[tokio::test]
async fn a_send_needs_a_credit_and_uses_it() {
    let (fake, client) = fake(TokenPolicy::default()).await;
    let token = stable_token(&fake, &client, false).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        43101
    );
    fake.accept("o1", "tmpl-ship");
    let ok = send(&fake, &client, &token, "o1", "杯子").await;
    assert_eq!(ok["errcode"], 0);
    assert!(ok["msgid"].as_u64().is_some());
    assert_eq!(fake.credits("o1", "tmpl-ship"), 0);
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        43101
    );
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(fake.sent()[0].page.as_deref(), Some("pages/order?id=1"));
}

#[tokio::test]
async fn invalid_fields_templates_and_openids_get_wechat_s_errcodes() {
    let (fake, client) = fake(TokenPolicy::default()).await;
    let token = stable_token(&fake, &client, false).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    fake.accept("o1", "tmpl-ship");
    let too_long = send(&fake, &client, &token, "o1", &"字".repeat(21)).await;
    assert_eq!(
        too_long,
        json!({"errcode": 47003, "errmsg": "argument invalid! data.thing1.value invalid"})
    );
    assert_eq!(
        fake.credits("o1", "tmpl-ship"),
        1,
        "a refused send uses no credit"
    );
    let unknown: Value = client
        .post(format!(
            "{}/cgi-bin/message/subscribe/send?access_token={token}",
            fake.base_url()
        ))
        .json(&json!({"touser": "o1", "template_id": "nope", "data": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["errcode"], 40037);
    assert_eq!(
        send(&fake, &client, &token, "", "杯子").await["errcode"],
        40003
    );
    assert_eq!(
        send(&fake, &client, "not-a-token", "o1", "杯子").await["errcode"],
        40001
    );
}

#[tokio::test]
async fn one_send_per_user_at_a_time_and_injected_faults() {
    let (fake, client) = fake(TokenPolicy::default()).await;
    let token = stable_token(&fake, &client, false).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        fake.accept("o1", "tmpl-ship");
    }
    fake.inject(Fault::Slow {
        delay: Duration::from_millis(300),
        times: 1,
    });
    let slow = {
        let (fake, client, token) = (fake.clone(), client.clone(), token.clone());
        tokio::spawn(async move { send(&fake, &client, &token, "o1", "杯子").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        43108
    );
    assert_eq!(slow.await.unwrap()["errcode"], 0);

    fake.inject(Fault::Errcode {
        errcode: -1,
        times: 2,
    });
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        -1
    );
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        -1
    );
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        0
    );
    fake.inject(Fault::QuotaFor(Duration::from_millis(200)));
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        45009
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        0
    );
    assert_eq!(fake.credits("o1", "tmpl-ship"), 0);
    fake.expire_token();
    assert_eq!(
        send(&fake, &client, &token, "o1", "杯子").await["errcode"],
        40001
    );
}

#[tokio::test]
async fn the_template_list_carries_types_and_enum_values() {
    let (fake, client) = fake(TokenPolicy::default()).await;
    let token = stable_token(&fake, &client, false).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let list: Value = client
        .get(format!(
            "{}/wxaapi/newtmpl/gettemplate?access_token={token}",
            fake.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["errcode"], 0);
    let template = &list["data"][0];
    assert_eq!(
        (template["priTmplId"].as_str(), template["type"].as_u64()),
        (Some("tmpl-ship"), Some(2))
    );
    assert!(template["content"]
        .as_str()
        .unwrap()
        .contains("{{thing1.DATA}}"));
    assert_eq!(
        template["keywordEnumValueList"][0]["enumValueList"],
        json!(["已发货"])
    );
}

#[tokio::test]
async fn a_fake_run_as_a_process_is_driven_over_http() {
    let (fake, client) = fake(TokenPolicy::default()).await;
    let base = fake.base_url();
    let status = client
        .put(format!("{base}/fake/templates/tmpl-bill"))
        .json(&json!({"title": "账单", "kind": "long_term", "fields": [{"key": "amount1", "name": "金额"}]}))
        .send().await.unwrap().status();
    assert_eq!(status, 200);
    let accepted: Value = client
        .post(format!("{base}/fake/accept"))
        .json(&json!({"openid": "o9", "template_id": "tmpl-ship"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["credits"], 1);
    let fault = client
        .post(format!("{base}/fake/faults"))
        .json(&json!({"errcode": 45009, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200);
    let token = stable_token(&fake, &client, false).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        send(&fake, &client, &token, "o9", "杯子").await["errcode"],
        45009
    );
    assert_eq!(
        send(&fake, &client, &token, "o9", "杯子").await["errcode"],
        0
    );
    let sent: Value = client
        .get(format!("{base}/fake/sent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["sent"][0]["touser"], "o9");
}
