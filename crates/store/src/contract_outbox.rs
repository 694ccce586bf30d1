//! Contract cases for the message outbox: acceptance, claims, outcomes and the
//! credit movements they make, with an explicit clock.

use crate::messages::{ClaimRequest, ClaimedMessage, Enqueued, Finished, NewMessage, Outcome};
use crate::{AppRecord, IdempotencyKey, Store, SubscriptionReport};
use huiliu_domain::apps::NewApp;
use huiliu_domain::credits::SubscribeResult;
use huiliu_domain::ids::UserId;
use huiliu_domain::messages::MessageStatus;
use huiliu_domain::templates::Template;
use huiliu_domain::time::AppTimeZone;
use huiliu_domain::users::ProfilePatch;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const S: i64 = 1_000_000;
/// A fixed "now" for the clock these cases drive.
const T0: i64 = 1_795_000_000 * S;

async fn app_with_template<S: Store>(store: &S, kind: &str) -> AppRecord {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::from_os_rng();
    let plan = NewApp::generate("outbox", AppTimeZone::default(), &mut rng).unwrap();
    let app = store.create_app(&plan).await.unwrap();
    let template = Template::parse(
        "tmpl-ship",
        &json!({"title": "发货通知", "kind": kind, "fields": [{"key": "thing1", "name": "商品"}]}),
    )
    .unwrap();
    store.put_template(&app, &template).await.unwrap();
    let settings = crate::StoredWechat {
        appid: "wx4f28b4b2dcaafca1".into(),
        secret_sealed: vec![1, 2, 3],
        token_sealed: None,
        aes_key_sealed: None,
        api_base: None,
    };
    store.put_wechat_settings(&app, &settings).await.unwrap();
    app
}

async fn user_with_credits<S: Store>(
    store: &S,
    app: &AppRecord,
    user: &str,
    openid: Option<&str>,
    accepts: u32,
) {
    let patch = ProfilePatch::parse(&json!({ "openid": openid })).unwrap();
    store
        .update_user_profile(app, &UserId::parse(user).unwrap(), &patch)
        .await
        .unwrap();
    let template = store.get_template(app, "tmpl-ship").await.unwrap().unwrap();
    for _ in 0..accepts {
        store
            .record_subscriptions(
                app,
                &SubscriptionReport {
                    user_id: UserId::parse(user).unwrap(),
                    answers: vec![("tmpl-ship".into(), template.kind, SubscribeResult::Accept)],
                    source: huiliu_domain::credits::AnswerSource::ClientReport,
                    idempotency: None,
                },
            )
            .await
            .unwrap();
    }
}

fn message(id: &str, user: &str, key: &str, now_us: i64, ttl_s: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        user_id: UserId::parse(user).unwrap(),
        template_id: "tmpl-ship".into(),
        data: r#"{"thing1":{"value":"耳机"}}"#.into(),
        page: Some(format!("pages/order?hl_t=t{id}")),
        tracking: format!("t{id}"),
        now_us,
        expires_us: now_us + ttl_s * S,
        idempotency: IdempotencyKey {
            key: key.into(),
            request_hash: key.as_bytes().to_vec(),
        },
    }
}

fn claim_at(holder: &str, now_us: i64) -> ClaimRequest {
    ClaimRequest {
        holder: holder.into(),
        now_us,
        lease_until_us: now_us + 30 * S,
        reconcile_us: 60 * S,
        limit: 100,
    }
}

/// (credits, reserved) of the user's subscription.
async fn credits<S: Store>(store: &S, app: &AppRecord, user: &str) -> (u32, u32) {
    let records = store
        .list_subscriptions(app, &UserId::parse(user).unwrap())
        .await
        .unwrap()
        .unwrap();
    records
        .iter()
        .find(|r| r.template_id == "tmpl-ship")
        .map_or((0, 0), |r| (r.state.credits, r.reserved))
}

async fn status<S: Store>(store: &S, app: &AppRecord, id: &str) -> MessageStatus {
    store.get_message(app, id).await.unwrap().unwrap().status
}

async fn enqueue<S: Store>(
    store: &S,
    app: &AppRecord,
    m: &NewMessage,
) -> crate::messages::AcceptedMessage {
    match store.enqueue_message(app, m).await.unwrap() {
        Enqueued::Done(accepted) => accepted,
        other => panic!("expected a new message, got {other:?}"),
    }
}

fn sent(id: &str) -> Finished {
    Finished {
        id: id.into(),
        outcome: Outcome::Sent {
            msgid: format!("wx-{id}"),
        },
    }
}

pub async fn outbox_sends_with_exact_credits_and_one_send_per_user<S: Store>(store: S) {
    // Without WeChat settings nothing is accepted.
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::from_os_rng();
    let bare = NewApp::generate("bare", AppTimeZone::default(), &mut rng).unwrap();
    let bare = store.create_app(&bare).await.unwrap();
    let patch = ProfilePatch::parse(&json!({ "openid": "oB" })).unwrap();
    store
        .update_user_profile(&bare, &UserId::parse("u1").unwrap(), &patch)
        .await
        .unwrap();
    assert_eq!(
        store
            .enqueue_message(&bare, &message("m0", "u1", "k0", T0, 3600))
            .await
            .unwrap(),
        Enqueued::WechatNotConfigured
    );
    assert!(store.get_message(&bare, "m0").await.unwrap().is_none());

    let app = app_with_template(&store, "one_time").await;
    user_with_credits(&store, &app, "u1", Some("oU1"), 2).await;
    // Data and template are checked in the same read; nothing is stored when they fail.
    let mut too_long = message("m-bad", "u1", "k-bad", T0, 3600);
    too_long.data =
        json!({"thing1": {"value": "一二三四五六七八九十一二三四五六七八九十一"}}).to_string();
    match store.enqueue_message(&app, &too_long).await.unwrap() {
        Enqueued::Invalid(error) => assert_eq!(error.field.as_deref(), Some("data.thing1")),
        other => panic!("{other:?}"),
    }
    let mut unknown = message("m-tmpl", "u1", "k-tmpl", T0, 3600);
    unknown.template_id = "tmpl-none".into();
    assert_eq!(
        store.enqueue_message(&app, &unknown).await.unwrap(),
        Enqueued::UnknownTemplate
    );
    assert!(store.get_message(&app, "m-bad").await.unwrap().is_none());
    let first = message("m1", "u1", "k1", T0, 3600);
    assert_eq!(enqueue(&store, &app, &first).await.status, "queued");
    // A replay answers the same; the key with another body is refused; nothing new stored.
    match store
        .enqueue_message(&app, &message("m1-again", "u1", "k1", T0, 3600))
        .await
        .unwrap()
    {
        Enqueued::Replayed(accepted) => assert_eq!(
            (accepted.id.as_str(), accepted.status.as_str()),
            ("m1", "queued")
        ),
        other => panic!("{other:?}"),
    }
    let mut reused = message("m1-other", "u1", "k1", T0, 3600);
    reused.idempotency.request_hash = b"another body".to_vec();
    assert_eq!(
        store.enqueue_message(&app, &reused).await.unwrap(),
        Enqueued::KeyReused
    );
    assert!(store.get_message(&app, "m1-again").await.unwrap().is_none());
    assert_eq!(
        store
            .enqueue_message(&app, &message("m-x", "stranger", "kx", T0, 3600))
            .await
            .unwrap(),
        Enqueued::UnknownUser
    );
    enqueue(&store, &app, &message("m2", "u1", "k2", T0, 3600)).await;

    // One send in flight per user: the second message waits.
    let claimed = store.claim_messages(&claim_at("node-a", T0)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["m1"]
    );
    assert_eq!(claimed[0].openid, "oU1");
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(
        credits(&store, &app, "u1").await,
        (1, 1),
        "one credit reserved"
    );
    assert!(store
        .claim_messages(&claim_at("node-b", T0 + S))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&store, &app, "m1").await, MessageStatus::Sending);

    // Another holder's outcome is ignored.
    assert_eq!(
        store
            .finish_messages("node-b", T0 + S, &[sent("m1")])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .finish_messages("node-a", T0 + S, &[sent("m1")])
            .await
            .unwrap(),
        1
    );
    let m1 = store.get_message(&app, "m1").await.unwrap().unwrap();
    assert_eq!(
        (m1.status, m1.wechat_msgid.as_deref(), m1.sent_us),
        (MessageStatus::Sent, Some("wx-m1"), Some(T0 + S))
    );
    assert_eq!(credits(&store, &app, "u1").await, (1, 0), "spent");
    // A late duplicate outcome changes nothing.
    assert_eq!(
        store
            .finish_messages("node-a", T0 + S, &[sent("m1")])
            .await
            .unwrap(),
        0
    );

    let claimed = store
        .claim_messages(&claim_at("node-b", T0 + 2 * S))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["m2"]
    );
    // WeChat says the user has no subscription after all: zero, not just this one.
    store
        .finish_messages(
            "node-b",
            T0 + 2 * S,
            &[Finished {
                id: "m2".into(),
                outcome: Outcome::Failed {
                    errcode: Some(43101),
                    errmsg: "user refuse to accept the msg".into(),
                    zero_credits: true,
                    disable_template: false,
                },
            }],
        )
        .await
        .unwrap();
    let m2 = store.get_message(&app, "m2").await.unwrap().unwrap();
    assert_eq!(
        (m2.status, m2.errcode, m2.error.as_deref()),
        (MessageStatus::Failed, Some(43101), Some("wechat_error"))
    );
    assert_eq!(credits(&store, &app, "u1").await, (0, 0));
}

pub async fn outbox_retries_expires_and_settles_unknown_outcomes<S: Store>(store: S) {
    let app = app_with_template(&store, "one_time").await;
    user_with_credits(&store, &app, "u1", Some("oU1"), 1).await;
    user_with_credits(&store, &app, "u2", Some("oU2"), 1).await;
    user_with_credits(&store, &app, "u3", Some("oU3"), 1).await;
    enqueue(&store, &app, &message("m1", "u1", "k1", T0, 3600)).await;

    // A retryable failure releases the credit and waits.
    store.claim_messages(&claim_at("a", T0)).await.unwrap();
    let retry = Finished {
        id: "m1".into(),
        outcome: Outcome::Retry {
            at_us: T0 + 5 * S,
            errcode: Some(-1),
            errmsg: "system error".into(),
        },
    };
    store.finish_messages("a", T0, &[retry]).await.unwrap();
    assert_eq!(status(&store, &app, "m1").await, MessageStatus::Queued);
    assert_eq!(credits(&store, &app, "u1").await, (1, 0));
    assert!(
        store
            .claim_messages(&claim_at("a", T0 + S))
            .await
            .unwrap()
            .is_empty(),
        "not before its time"
    );
    let again = store
        .claim_messages(&claim_at("a", T0 + 6 * S))
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2);

    // No answer: the credit stays reserved, and the message is never claimed again.
    let unknown = Finished {
        id: "m1".into(),
        outcome: Outcome::Unknown {
            until_us: T0 + 100 * S,
            errmsg: "connection lost".into(),
        },
    };
    store
        .finish_messages("a", T0 + 6 * S, &[unknown])
        .await
        .unwrap();
    assert_eq!(status(&store, &app, "m1").await, MessageStatus::Unknown);
    assert_eq!(credits(&store, &app, "u1").await, (0, 1));
    assert!(store
        .claim_messages(&claim_at("b", T0 + 50 * S))
        .await
        .unwrap()
        .is_empty());
    // Past the deadline with no sent event: failed, credit released.
    assert!(store
        .claim_messages(&claim_at("b", T0 + 101 * S))
        .await
        .unwrap()
        .is_empty());
    let m1 = store.get_message(&app, "m1").await.unwrap().unwrap();
    assert_eq!(
        (m1.status, m1.error.as_deref()),
        (MessageStatus::Failed, Some("outcome_unknown"))
    );
    assert_eq!(credits(&store, &app, "u1").await, (1, 0));

    // A node that dies mid-send: its lease ends, the outcome becomes unknown (not resent).
    enqueue(&store, &app, &message("m2", "u2", "k2", T0 + 200 * S, 3600)).await;
    assert_eq!(
        store
            .claim_messages(&claim_at("dead", T0 + 200 * S))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .claim_messages(&claim_at("b", T0 + 229 * S))
            .await
            .unwrap()
            .is_empty(),
        "lease still running"
    );
    assert!(
        store
            .claim_messages(&claim_at("b", T0 + 231 * S))
            .await
            .unwrap()
            .is_empty(),
        "not resent"
    );
    assert_eq!(status(&store, &app, "m2").await, MessageStatus::Unknown);
    assert_eq!(credits(&store, &app, "u2").await, (0, 1));
    // The dead node's outcome, if it ever arrives, still counts (it held the message).
    store
        .finish_messages("dead", T0 + 232 * S, &[sent("m2")])
        .await
        .unwrap();
    assert_eq!(status(&store, &app, "m2").await, MessageStatus::Sent);
    assert_eq!(credits(&store, &app, "u2").await, (0, 0));

    // Still queued when its time runs out: expired, credit untouched.
    enqueue(&store, &app, &message("m3", "u3", "k3", T0 + 300 * S, 60)).await;
    assert!(store
        .claim_messages(&claim_at("b", T0 + 361 * S))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&store, &app, "m3").await, MessageStatus::Expired);
    assert_eq!(credits(&store, &app, "u3").await, (1, 0));
}

pub async fn outbox_skips_without_credit_openid_or_enabled_template<S: Store>(store: S) {
    let app = app_with_template(&store, "one_time").await;
    user_with_credits(&store, &app, "no-openid", None, 1).await;
    user_with_credits(&store, &app, "no-credit", Some("oN"), 0).await;
    user_with_credits(&store, &app, "one", Some("oOne"), 1).await;
    let skipped = enqueue(&store, &app, &message("m1", "no-openid", "k1", T0, 3600)).await;
    assert_eq!(
        (skipped.status.as_str(), skipped.error.as_deref()),
        ("skipped", Some("no_openid"))
    );
    let skipped = enqueue(&store, &app, &message("m2", "no-credit", "k2", T0, 3600)).await;
    assert_eq!(skipped.error.as_deref(), Some("no_credit"));
    assert_eq!(status(&store, &app, "m2").await, MessageStatus::Skipped);

    // Two messages, one credit: the second is skipped when its turn comes.
    enqueue(&store, &app, &message("m3", "one", "k3", T0, 3600)).await;
    enqueue(&store, &app, &message("m4", "one", "k4", T0, 3600)).await;
    let claimed = store.claim_messages(&claim_at("a", T0)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .finish_messages("a", T0, &[sent(&claimed[0].id)])
        .await
        .unwrap();
    assert!(store
        .claim_messages(&claim_at("a", T0 + S))
        .await
        .unwrap()
        .is_empty());
    let skipped = store.get_message(&app, "m4").await.unwrap().unwrap();
    assert_eq!(
        (skipped.status, skipped.error.as_deref()),
        (MessageStatus::Skipped, Some("no_credit"))
    );
    assert_eq!(credits(&store, &app, "one").await, (0, 0));

    // 43107 disables the template; later messages are skipped; the credit goes back.
    user_with_credits(&store, &app, "one", Some("oOne"), 2).await;
    enqueue(&store, &app, &message("m5", "one", "k5", T0 + 2 * S, 3600)).await;
    let claimed = store
        .claim_messages(&claim_at("a", T0 + 2 * S))
        .await
        .unwrap();
    let banned = Finished {
        id: claimed[0].id.clone(),
        outcome: Outcome::Failed {
            errcode: Some(43107),
            errmsg: "banned".into(),
            zero_credits: false,
            disable_template: true,
        },
    };
    store
        .finish_messages("a", T0 + 2 * S, &[banned])
        .await
        .unwrap();
    assert_eq!(credits(&store, &app, "one").await, (2, 0));
    let skipped = enqueue(&store, &app, &message("m6", "one", "k6", T0 + 3 * S, 3600)).await;
    assert_eq!(skipped.error.as_deref(), Some("template_disabled"));

    // A long-term permission sends without taking credits.
    let long = app_with_template(&store, "long_term").await;
    user_with_credits(&store, &long, "l1", Some("oL1"), 1).await;
    enqueue(&store, &long, &message("m7", "l1", "k7", T0, 3600)).await;
    let claimed = store
        .claim_messages(&claim_at("a", T0 + 4 * S))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["m7"]
    );
    store
        .finish_messages("a", T0 + 4 * S, &[sent("m7")])
        .await
        .unwrap();
    let record = &store
        .list_subscriptions(&long, &UserId::parse("l1").unwrap())
        .await
        .unwrap()
        .unwrap()[0];
    assert!(record.state.long_term);
    assert_eq!((record.state.credits, record.reserved), (0, 0));
}

/// Four nodes claim one queue at once: no message twice, never two sends in flight
/// for one user, credits exact at the end.
pub async fn concurrent_claims_never_share_a_message_or_a_user<S: Store>(store: S) {
    let app = app_with_template(&store, "one_time").await;
    const USERS: usize = 20;
    const PER_USER: usize = 6;
    for u in 0..USERS {
        user_with_credits(&store, &app, &format!("u{u}"), Some(&format!("o{u}")), 4).await;
    }
    for n in 0..USERS * PER_USER {
        let user = format!("u{}", n % USERS);
        enqueue(
            &store,
            &app,
            &message(&format!("m{n}"), &user, &format!("k{n}"), T0, 3600),
        )
        .await;
    }
    let in_flight = Arc::new(Mutex::new(HashSet::<String>::new()));
    let claimed_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut nodes = Vec::new();
    for node in 0..4 {
        let (store, in_flight, claimed_ids) =
            (store.clone(), in_flight.clone(), claimed_ids.clone());
        nodes.push(tokio::spawn(async move {
            let holder = format!("node-{node}");
            let mut clock = T0;
            let mut idle = 0;
            while idle < 20 {
                clock += S;
                let mut request = claim_at(&holder, clock);
                request.limit = 7;
                let claimed: Vec<ClaimedMessage> = store.claim_messages(&request).await.unwrap();
                if claimed.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for c in &claimed {
                    assert!(
                        in_flight.lock().unwrap().insert(c.openid.clone()),
                        "two sends in flight for {}",
                        c.openid
                    );
                    claimed_ids.lock().unwrap().push(c.id.clone());
                }
                let finished: Vec<Finished> = claimed.iter().map(|c| sent(&c.id)).collect();
                for c in &claimed {
                    in_flight.lock().unwrap().remove(&c.openid);
                }
                store
                    .finish_messages(&holder, clock, &finished)
                    .await
                    .unwrap();
            }
        }));
    }
    for node in nodes {
        node.await.unwrap();
    }
    let mut ids = claimed_ids.lock().unwrap().clone();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a message was claimed twice");
    assert_eq!(total, USERS * 4, "every credit used once");
    for u in 0..USERS {
        assert_eq!(credits(&store, &app, &format!("u{u}")).await, (0, 0));
    }
    let mut skipped = 0;
    for n in 0..USERS * PER_USER {
        match status(&store, &app, &format!("m{n}")).await {
            MessageStatus::Sent => {}
            MessageStatus::Skipped => skipped += 1,
            other => panic!("m{n} ended {other:?}"),
        }
    }
    assert_eq!(skipped, USERS * (PER_USER - 4));
}
