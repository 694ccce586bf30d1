//! Message dispatch by real server processes against the fake WeChat: a server
//! killed with SIGKILL mid-dispatch and restarted sends nothing twice and loses no
//! credit; two nodes on one PostgreSQL share the queue and one access token.

use crate::{create_app, fresh_url, Backend};
use huiliu_domain::templates::Template;
use huiliu_wechat::fake::{FakeWechat, Fault, TokenPolicy};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";
const MASTER_KEY: &str = "8d3f1c2b4a5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
const TEMPLATE: &str = "tmpl-ship";

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `huiliu serve` process with short leases, named `node_id`, once it is ready.
async fn start_node(url: &str, node_id: &str) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args([
            "serve",
            "--database-url",
            url,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "off",
        ])
        .env("HUILIU_LOG", "warn")
        .env("HUILIU_MASTER_KEY", MASTER_KEY)
        .env("HUILIU_NODE_ID", node_id)
        .env("HUILIU_DISPATCH_LEASE_SECONDS", "2")
        .env("HUILIU_DISPATCH_RECONCILE_SECONDS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    // Owned at once, so that a failed start is still killed and reaped.
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{}/readyz", node.base)).send().await {
            if response.status().is_success() {
                return node;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The fake, the app's settings and template, and `users` users with `credits`
/// accepted prompts each, granted on both sides.
async fn prepare(
    client: &reqwest::Client,
    node: &Node,
    key: &str,
    users: usize,
    credits: usize,
) -> FakeWechat {
    let fake = FakeWechat::start("127.0.0.1:0", APPID, SECRET, TokenPolicy::default())
        .await
        .unwrap();
    let put = reqwest::Method::PUT;
    let settings = json!({"appid": APPID, "secret": SECRET, "api_base": fake.base_url()});
    assert_eq!(
        call(
            client,
            &node.base,
            key,
            put.clone(),
            "/v1/wechat/settings",
            settings
        )
        .await
        .0,
        200
    );
    let template = json!({"title": "发货通知", "kind": "one_time", "fields": [{"key": "thing1", "name": "商品"}]});
    let path = format!("/v1/templates/{TEMPLATE}");
    assert_eq!(
        call(
            client,
            &node.base,
            key,
            put.clone(),
            &path,
            template.clone()
        )
        .await
        .0,
        200
    );
    fake.add_template(Template::parse(TEMPLATE, &template).unwrap());
    for u in 0..users {
        let openid = format!("o{u:05}");
        let (status, _) = call(
            client,
            &node.base,
            key,
            put.clone(),
            &format!("/v1/users/u{u}"),
            json!({ "openid": openid }),
        )
        .await;
        assert!(status == 200 || status == 201);
        for _ in 0..credits {
            let report = json!({"user_id": format!("u{u}"), "results": {TEMPLATE: "accept"}});
            assert_eq!(
                call(
                    client,
                    &node.base,
                    key,
                    reqwest::Method::POST,
                    "/v1/subscriptions",
                    report
                )
                .await
                .0,
                200
            );
            fake.accept(&openid, TEMPLATE);
        }
    }
    fake
}

/// Posts message `n` (to user `n % users`) through `node`; returns its id.
async fn post_message(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    n: usize,
    users: usize,
) -> String {
    let body = json!({
        "user_id": format!("u{}", n % users), "template_id": TEMPLATE,
        "data": {"thing1": format!("订单{n}")}, "idempotency_key": format!("m{n}")
    });
    let (status, accepted) = call(
        client,
        base,
        key,
        reqwest::Method::POST,
        "/v1/messages",
        body,
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    accepted["id"].as_str().unwrap().to_string()
}

/// Waits until every message is final; returns each one's view.
async fn wait_final(client: &reqwest::Client, base: &str, key: &str, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut views = Vec::new();
    for id in ids {
        loop {
            let (_, view) = call(
                client,
                base,
                key,
                reqwest::Method::GET,
                &format!("/v1/messages/{id}"),
                Value::Null,
            )
            .await;
            if ["sent", "failed", "skipped", "expired"]
                .contains(&view["status"].as_str().unwrap_or(""))
            {
                views.push(view);
                break;
            }
            assert!(Instant::now() < deadline, "still not final: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    views
}

/// huiliu's available credits per user.
async fn huiliu_credits(client: &reqwest::Client, base: &str, key: &str, users: usize) -> Vec<u64> {
    let mut credits = Vec::new();
    for u in 0..users {
        let (_, view) = call(
            client,
            base,
            key,
            reqwest::Method::GET,
            &format!("/v1/users/u{u}/subscriptions"),
            Value::Null,
        )
        .await;
        let template = &view["templates"][0];
        assert_eq!(template["reserved"], 0, "nothing left reserved: {view}");
        credits.push(template["credits"].as_u64().unwrap());
    }
    credits
}

/// The number each message carries in its data ("订单N"), per message the fake received.
fn delivered(fake: &FakeWechat) -> Vec<usize> {
    fake.sent()
        .iter()
        .map(|m| {
            m.data["thing1"]["value"]
                .as_str()
                .unwrap()
                .trim_start_matches("订单")
                .parse()
                .unwrap()
        })
        .collect()
}

async fn sigkill_during_dispatch(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (_, key, _) = create_app(&url, "dispatch crash");
    let client = reqwest::Client::new();
    let (users, per_user) = (60, 2);
    let mut node = start_node(&url, "node-before").await;
    let fake = prepare(&client, &node, &key, users, per_user).await;
    // Slow answers keep sends in flight when the process dies.
    fake.inject(Fault::Slow {
        delay: Duration::from_millis(40),
        times: 100_000,
    });
    let mut ids = Vec::new();
    for n in 0..users * per_user {
        ids.push(post_message(&client, &node.base, &key, n, users).await);
    }
    let started = Instant::now();
    while fake.sent().len() < users / 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dispatch did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();
    let at_kill = fake.sent().len();
    drop(node);

    let node = start_node(&url, "node-after").await;
    let views = wait_final(&client, &node.base, &key, &ids).await;
    let got = delivered(&fake);
    let distinct: HashSet<usize> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "a message reached WeChat twice");
    assert!(
        at_kill < ids.len(),
        "the kill came before the end ({at_kill} sent)"
    );
    let mut unknown_but_delivered: HashMap<usize, u64> = HashMap::new();
    for (n, view) in views.iter().enumerate() {
        match (
            view["status"].as_str().unwrap(),
            view["error"]["code"].as_str(),
        ) {
            ("sent", _) => assert!(
                distinct.contains(&n),
                "huiliu says sent, WeChat never got it: {view}"
            ),
            // In flight at the kill: never resent; WeChat may or may not have it.
            ("failed", Some("outcome_unknown")) => {
                if distinct.contains(&n) {
                    *unknown_but_delivered.entry(n % users).or_default() += 1;
                }
            }
            other => panic!("message {n} ended {other:?}: {view}"),
        }
    }
    let unknown = views
        .iter()
        .filter(|v| v["error"]["code"] == "outcome_unknown")
        .count();
    eprintln!(
        "killed after {at_kill} sends; {unknown} outcomes unknown, {} of them delivered",
        unknown_but_delivered.values().sum::<u64>()
    );
    assert!(
        unknown > 0,
        "the kill found sends in flight (answers take 40 ms)"
    );
    // Every delivered message is known to huiliu as sent, or as an unknown outcome.
    for n in &distinct {
        let status = views[*n]["status"].as_str().unwrap();
        assert!(status == "sent" || status == "failed", "{}", views[*n]);
    }
    // Credits: never below WeChat's (none lost); above it only by the documented
    // unknown outcomes WeChat did deliver.
    let ours = huiliu_credits(&client, &node.base, &key, users).await;
    for (u, ours) in ours.iter().enumerate() {
        let theirs = u64::from(fake.credits(&format!("o{u:05}"), TEMPLATE));
        assert_eq!(
            *ours,
            theirs + unknown_but_delivered.get(&u).copied().unwrap_or(0),
            "user u{u}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_dispatch_sends_nothing_twice_and_loses_no_credit_sqlite() {
    sigkill_during_dispatch(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_dispatch_sends_nothing_twice_and_loses_no_credit_postgres() {
    sigkill_during_dispatch(Backend::Postgres).await;
}

/// Two nodes dispatch one queue; the token expires midway and bursts of -1 come:
/// every message goes out once, one node refreshes the token, credits agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_share_the_queue_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(Backend::Postgres, &dir).await else {
        return;
    };
    let (_, key, _) = create_app(&url, "two nodes");
    let client = reqwest::Client::new();
    let (users, per_user) = (80, 2);
    let a = start_node(&url, "node-a").await;
    let b = start_node(&url, "node-b").await;
    let fake = prepare(&client, &a, &key, users, per_user).await;
    fake.inject(Fault::Errcode {
        errcode: -1,
        times: 15,
    });
    let mut ids = Vec::new();
    for n in 0..users * per_user {
        let node = if n % 2 == 0 { &a } else { &b };
        ids.push(post_message(&client, &node.base, &key, n, users).await);
        if n == users {
            fake.expire_token();
        }
    }
    let views = wait_final(&client, &b.base, &key, &ids).await;
    for view in &views {
        assert_eq!(view["status"], "sent", "{view}");
    }
    let got = delivered(&fake);
    assert_eq!(got.len(), ids.len());
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "a message went out twice"
    );
    assert!(
        fake.tokens_issued() <= 2,
        "one fetch, and one refresh after the expiry: {}",
        fake.tokens_issued()
    );
    let ours = huiliu_credits(&client, &a.base, &key, users).await;
    for (u, ours) in ours.iter().enumerate() {
        assert_eq!((*ours, fake.credits(&format!("o{u:05}"), TEMPLATE)), (0, 0));
    }
}
