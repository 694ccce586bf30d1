//! The contract every backend passes: the same cases, run against SQLite and PostgreSQL.
//!
//! A backend's test file calls [`contract_tests!`](crate::contract_tests) with an async
//! factory returning `Option<S>` (a fresh, migrated, empty store, or `None` when the
//! backend is not available on this machine).

pub use crate::contract_outbox::*;
pub use crate::contract_points::*;
use crate::{ActivityCursor, AppRecord, Store, StoreError};
use huiliu_domain::analytics::{ActivityIndex, LocalDay};
use huiliu_domain::apps::NewApp;
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::{EventId, EventName, UserId, WechatId};
use huiliu_domain::keys::PresentedKey;
use huiliu_domain::time::AppTimeZone;
use huiliu_domain::users::{Patch, ProfilePatch};
use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

/// Expands to one `#[tokio::test]` per contract case.
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@cases $make;
            creates_finds_and_lists_apps,
            keys_are_found_by_id_and_match_only_their_secret,
            ingest_counts_accepted_and_duplicates_across_batches,
            users_get_dense_indexes_in_order_of_first_sight,
            first_and_last_seen_follow_event_time_not_arrival,
            apps_never_see_each_others_events_or_users,
            profile_update_creates_and_merges,
            profile_update_keeps_activity_and_rejects_oversized_attributes,
            concurrent_ingest_keeps_indexes_unique_and_counts_exact,
            sources_are_recorded_per_event,
            the_activity_index_follows_ingest_compaction_and_rebuilds,
            funnel_events_are_filtered_by_name_and_time_and_ordered,
            outbox_sends_with_exact_credits_and_one_send_per_user,
            outbox_retries_expires_and_settles_unknown_outcomes,
            outbox_skips_without_credit_openid_or_enabled_template,
            concurrent_claims_never_share_a_message_or_a_user,
            ledger_books_balance_under_retries_and_interleavings
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = ($make)().await else { return };
                $crate::contract::$case(store).await;
            }
        )*
    };
}

fn rng() -> StdRng {
    StdRng::from_os_rng()
}

async fn new_app<S: Store>(store: &S, name: &str) -> (AppRecord, NewApp) {
    let app = NewApp::generate(name, AppTimeZone::default(), &mut rng()).unwrap();
    let record = store.create_app(&app).await.unwrap();
    (record, app)
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

/// An event with the given id, user and time.
pub fn event(id: &str, user: &str, time: &str) -> ValidEvent {
    ValidEvent {
        id: EventId::parse(id).unwrap(),
        user_id: UserId::parse(user).unwrap(),
        name: EventName::parse("launch").unwrap(),
        time: at(time),
        props: r#"{"scene":1001}"#.into(),
    }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub async fn creates_finds_and_lists_apps<S: Store>(store: S) {
    let (first, plan) = new_app(&store, "回流商城").await;
    assert_eq!(first.id, plan.id);
    assert_eq!(first.name, "回流商城");
    assert_eq!(first.timezone.name(), "Asia/Shanghai");
    let la = NewApp::generate(
        "LA",
        AppTimeZone::parse("America/Los_Angeles").unwrap(),
        &mut rng(),
    )
    .unwrap();
    let second = store.create_app(&la).await.unwrap();
    assert_eq!(second.timezone.name(), "America/Los_Angeles");

    let found = store.find_app(&first.id).await.unwrap().unwrap();
    assert_eq!(found, first);
    let listed: Vec<_> = store
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, vec![first.id.clone(), second.id.clone()]);
    let unknown = huiliu_domain::apps::AppId::parse("app_0000000000000000").unwrap();
    assert!(store.find_app(&unknown).await.unwrap().is_none());
}

pub async fn keys_are_found_by_id_and_match_only_their_secret<S: Store>(store: S) {
    let (app, plan) = new_app(&store, "keys").await;
    for key in [&plan.secret_key, &plan.publishable_key] {
        let presented = PresentedKey::parse(&key.plaintext).unwrap();
        let record = store.find_key(presented.key_id).await.unwrap().unwrap();
        assert_eq!(record.kind, key.kind);
        assert_eq!(record.app, app);
        assert!(presented.matches(&record.secret_hash));
    }
    let (_, other) = new_app(&store, "other").await;
    let other_key = PresentedKey::parse(&other.secret_key.plaintext).unwrap();
    let record = store
        .find_key(plan.secret_key.key_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(!other_key.matches(&record.secret_hash));
    assert!(store.find_key("nosuchkey000").await.unwrap().is_none());
}

pub async fn ingest_counts_accepted_and_duplicates_across_batches<S: Store>(store: S) {
    let (app, _) = new_app(&store, "dedupe").await;
    let first = vec![
        event("e1", "u1", "2026-11-20T10:00:00+08:00"),
        event("e2", "u1", "2026-11-20T11:00:00+08:00"),
    ];
    let outcome = store
        .ingest_events(&app, EventSource::Server, first.clone())
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (2, 0));

    let replay = vec![
        event("e2", "u1", "2026-11-20T11:00:00+08:00"),
        event("e3", "u2", "2026-11-20T12:00:00+08:00"),
    ];
    let outcome = store
        .ingest_events(&app, EventSource::Server, replay.clone())
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 1));
    assert_eq!(store.count_events(&app).await.unwrap(), 3);
    let u1 = store.get_user(&app, &user("u1")).await.unwrap().unwrap();
    assert_eq!(u1.event_count, 2, "a replayed event is not counted twice");

    let empty = store
        .ingest_events(&app, EventSource::Server, Vec::new())
        .await
        .unwrap();
    assert_eq!((empty.accepted, empty.duplicates), (0, 0));
}

pub async fn users_get_dense_indexes_in_order_of_first_sight<S: Store>(store: S) {
    let (app, _) = new_app(&store, "indexes").await;
    let batch: Vec<_> = (0..250)
        .map(|i| {
            event(
                &format!("e{i}"),
                &format!("user-{}", i % 120),
                "2026-11-20T10:00:00Z",
            )
        })
        .collect();
    store
        .ingest_events(&app, EventSource::Server, batch.clone())
        .await
        .unwrap();
    let more = vec![
        event("x1", "user-5", "2026-11-21T10:00:00Z"),
        event("x2", "late", "2026-11-21T10:00:00Z"),
    ];
    store
        .ingest_events(&app, EventSource::Client, more.clone())
        .await
        .unwrap();

    let mut indexes = Vec::new();
    for i in 0..120 {
        let record = store
            .get_user(&app, &user(&format!("user-{i}")))
            .await
            .unwrap()
            .unwrap();
        indexes.push(record.user_index);
    }
    let mut sorted = indexes.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..120).collect::<Vec<u32>>(),
        "indexes are 0..n with no gaps"
    );
    let late = store.get_user(&app, &user("late")).await.unwrap().unwrap();
    assert_eq!(late.user_index, 120);
    let profiled = store
        .update_user_profile(&app, &user("profile-only"), &ProfilePatch::default())
        .await
        .unwrap();
    assert_eq!(profiled.user_index, 121);
}

pub async fn first_and_last_seen_follow_event_time_not_arrival<S: Store>(store: S) {
    let (app, _) = new_app(&store, "seen").await;
    let late_first = vec![event("b", "u", "2026-11-21T00:00:00+08:00")];
    store
        .ingest_events(&app, EventSource::Server, late_first.clone())
        .await
        .unwrap();
    let earlier_and_middle = vec![
        event("a", "u", "2026-11-01T23:59:59+08:00"),
        event("c", "u", "2026-11-10T00:00:00+08:00"),
    ];
    store
        .ingest_events(&app, EventSource::Server, earlier_and_middle.clone())
        .await
        .unwrap();
    let record = store.get_user(&app, &user("u")).await.unwrap().unwrap();
    assert_eq!(record.first_seen, Some(at("2026-11-01T23:59:59+08:00")));
    assert_eq!(record.last_seen, Some(at("2026-11-21T00:00:00+08:00")));
    assert_eq!(record.event_count, 3);
}

pub async fn apps_never_see_each_others_events_or_users<S: Store>(store: S) {
    let (a, _) = new_app(&store, "a").await;
    let (b, _) = new_app(&store, "b").await;
    let batch = vec![event("same-id", "same-user", "2026-11-20T10:00:00Z")];
    let in_a = store
        .ingest_events(&a, EventSource::Server, batch.clone())
        .await
        .unwrap();
    let in_b = store
        .ingest_events(&b, EventSource::Server, batch.clone())
        .await
        .unwrap();
    assert_eq!(in_a.accepted, 1);
    assert_eq!(
        in_b.accepted, 1,
        "an event id seen by another app is not a duplicate"
    );
    store
        .update_user_profile(&a, &user("only-in-a"), &ProfilePatch::default())
        .await
        .unwrap();
    assert!(store
        .get_user(&b, &user("only-in-a"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.count_events(&a).await.unwrap(), 1);
    let ua = store
        .get_user(&a, &user("same-user"))
        .await
        .unwrap()
        .unwrap();
    let ub = store
        .get_user(&b, &user("same-user"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ua.user_index, ub.user_index),
        (0, 0),
        "each app has its own index space"
    );
}

pub async fn profile_update_creates_and_merges<S: Store>(store: S) {
    let (app, _) = new_app(&store, "profiles").await;
    let first = ProfilePatch::parse(&json!({
        "openid": "oAbc", "unionid": "uXyz", "attributes": {"city": "杭州", "vip": 1}
    }))
    .unwrap();
    let created = store
        .update_user_profile(&app, &user("p1"), &first)
        .await
        .unwrap();
    assert_eq!(created.openid.as_deref(), Some("oAbc"));
    assert_eq!(created.event_count, 0);
    assert_eq!(created.first_seen, None);

    let second = ProfilePatch {
        openid: Patch::Keep,
        unionid: Patch::Clear,
        attributes: json!({"vip": 2, "age": 30}).as_object().cloned().unwrap(),
    };
    let merged = store
        .update_user_profile(&app, &user("p1"), &second)
        .await
        .unwrap();
    assert_eq!(merged.openid.as_deref(), Some("oAbc"));
    assert_eq!(merged.unionid, None);
    assert_eq!(
        serde_json::Value::Object(merged.attributes.clone()),
        json!({"city": "杭州", "vip": 2, "age": 30})
    );
    let third = ProfilePatch {
        openid: Patch::Set(WechatId::parse("oNew").unwrap()),
        ..ProfilePatch::default()
    };
    let updated = store
        .update_user_profile(&app, &user("p1"), &third)
        .await
        .unwrap();
    assert_eq!(updated.openid.as_deref(), Some("oNew"));
    assert_eq!(updated.user_index, created.user_index);
    assert_eq!(
        store.get_user(&app, &user("p1")).await.unwrap().unwrap(),
        updated
    );
}

pub async fn profile_update_keeps_activity_and_rejects_oversized_attributes<S: Store>(store: S) {
    let (app, _) = new_app(&store, "activity").await;
    store
        .ingest_events(
            &app,
            EventSource::Server,
            vec![event("e", "u", "2026-11-20T10:00:00Z")],
        )
        .await
        .unwrap();
    let patch = ProfilePatch::parse(&json!({"attributes": {"k": "v"}})).unwrap();
    let record = store
        .update_user_profile(&app, &user("u"), &patch)
        .await
        .unwrap();
    assert_eq!(record.event_count, 1);
    assert_eq!(record.first_seen, Some(at("2026-11-20T10:00:00Z")));

    let huge = ProfilePatch::parse(&json!({"attributes": {"blob": "x".repeat(20_000)}})).unwrap();
    let err = store
        .update_user_profile(&app, &user("u"), &huge)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref e) if e.code == "too_large"),
        "{err:?}"
    );
    let after = store.get_user(&app, &user("u")).await.unwrap().unwrap();
    assert_eq!(after, record, "a rejected update changes nothing");
}

pub async fn concurrent_ingest_keeps_indexes_unique_and_counts_exact<S: Store>(store: S) {
    let (app, _) = new_app(&store, "race").await;
    // Eight writers send overlapping batches: the same events and users from several sides.
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for round in 0..5 {
                let batch: Vec<_> = (0..100)
                    .map(|i| {
                        let n = (writer * 37 + round * 100 + i) % 600;
                        (
                            n,
                            event(
                                &format!("ev-{n}"),
                                &format!("u-{}", n % 150),
                                "2026-11-20T10:00:00Z",
                            ),
                        )
                    })
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into_values()
                    .collect();
                accepted += store
                    .ingest_events(&app, EventSource::Server, batch.clone())
                    .await
                    .unwrap()
                    .accepted;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    let stored = store.count_events(&app).await.unwrap();
    assert_eq!(
        accepted as u64, stored,
        "every stored event was accepted exactly once"
    );
    let mut indexes = Vec::new();
    let mut counted = 0;
    for u in 0..150 {
        if let Some(record) = store
            .get_user(&app, &user(&format!("u-{u}")))
            .await
            .unwrap()
        {
            indexes.push(record.user_index);
            counted += record.event_count;
        }
    }
    let n = indexes.len() as u32;
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len() as u32, n, "no two users share an index");
    assert!(
        indexes.iter().all(|&i| i < n),
        "indexes stay dense: {indexes:?}"
    );
    assert_eq!(
        counted as u64, stored,
        "per-user counts add up to the stored events"
    );
}

pub async fn sources_are_recorded_per_event<S: Store>(store: S) {
    let (app, _) = new_app(&store, "sources").await;
    store
        .ingest_events(
            &app,
            EventSource::Client,
            vec![event("c1", "u", "2026-11-20T10:00:00Z")],
        )
        .await
        .unwrap();
    // Replaying the same id with the secret key must not upgrade its trust.
    let outcome = store
        .ingest_events(
            &app,
            EventSource::Server,
            vec![event("c1", "u", "2026-11-20T10:00:00Z")],
        )
        .await
        .unwrap();
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(store.count_events(&app).await.unwrap(), 1);
}

fn named(id: &str, user: &str, name: &str, time: &str) -> ValidEvent {
    ValidEvent {
        name: EventName::parse(name).unwrap(),
        ..event(id, user, time)
    }
}

/// Reads the rows after `cursor` into `index`; returns the new cursor, whether the
/// reader had to start over, and how many rows came.
async fn follow<S: Store>(
    store: &S,
    app: &AppRecord,
    cursor: ActivityCursor,
    index: &mut ActivityIndex,
) -> (ActivityCursor, bool, usize) {
    let update = store.activity_rows(app, cursor).await.unwrap();
    if update.reset {
        *index = ActivityIndex::default();
    }
    let count = update.rows.len();
    for row in update.rows {
        index.apply(row);
    }
    (update.cursor, update.reset, count)
}

fn local_day(date: &str) -> LocalDay {
    LocalDay::parse(date, "date").unwrap()
}

pub async fn the_activity_index_follows_ingest_compaction_and_rebuilds<S: Store>(store: S) {
    let (app, _) = new_app(&store, "index").await;
    let (other, _) = new_app(&store, "other index").await;
    let first_batch = vec![
        event("a1", "u1", "2026-11-20T10:00:00Z"),
        // 01:00 on the 22nd in Shanghai, still the 21st in UTC.
        event("a2", "u2", "2026-11-21T17:00:00Z"),
        named("a3", "u2", "$message_sent", "2026-11-19T10:00:00Z"),
    ];
    store
        .ingest_events(&app, EventSource::Server, first_batch)
        .await
        .unwrap();
    let u1 = store
        .get_user(&app, &user("u1"))
        .await
        .unwrap()
        .unwrap()
        .user_index;
    let u2 = store
        .get_user(&app, &user("u2"))
        .await
        .unwrap()
        .unwrap()
        .user_index;

    let mut index = ActivityIndex::default();
    let (cursor, reset, rows) = follow(&store, &app, ActivityCursor::default(), &mut index).await;
    assert!(!reset && rows > 0);
    assert!(index.active(local_day("2026-11-20")).contains(u1));
    assert!(index.active(local_day("2026-11-22")).contains(u2));
    assert_eq!(
        index.first_day_of(u2),
        Some(local_day("2026-11-22")),
        "huiliu's own events are no activity"
    );

    // An older event arriving later moves u1's first day; a replay adds nothing.
    let late = vec![event("a4", "u1", "2026-11-18T10:00:00Z")];
    store
        .ingest_events(&app, EventSource::Import, late.clone())
        .await
        .unwrap();
    let (cursor, _, rows) = follow(&store, &app, cursor, &mut index).await;
    assert!(rows > 0);
    assert_eq!(index.first_day_of(u1), Some(local_day("2026-11-18")));
    let stored_rows = |store: S, app: AppRecord| async move {
        store
            .activity_rows(&app, ActivityCursor::default())
            .await
            .unwrap()
            .rows
            .len()
    };
    let before_replay = stored_rows(store.clone(), app.clone()).await;
    store
        .ingest_events(&app, EventSource::Import, late)
        .await
        .unwrap();
    assert_eq!(
        stored_rows(store.clone(), app.clone()).await,
        before_replay,
        "duplicates write no index rows"
    );
    // (A reader may see rows again after its cursor: applying them changes nothing.)
    let (cursor, _, _) = follow(&store, &app, cursor, &mut index).await;
    assert_eq!(index.first_day_of(u1), Some(local_day("2026-11-18")));

    // Compaction: a reader starting now and the reader that followed along agree.
    let before: Vec<_> = index.to_rows();
    assert!(store.compact_activity(&app, 100).await.unwrap() >= 2);
    assert_eq!(store.compact_activity(&app, 100).await.unwrap(), 0);
    let (cursor, _, _) = follow(&store, &app, cursor, &mut index).await;
    assert_eq!(index.to_rows(), before, "merged rows add nothing new");
    let mut fresh = ActivityIndex::default();
    follow(&store, &app, ActivityCursor::default(), &mut fresh).await;
    assert_eq!(fresh.to_rows(), before);

    // Another app sees none of it.
    let mut theirs = ActivityIndex::default();
    let (_, _, rows) = follow(&store, &other, ActivityCursor::default(), &mut theirs).await;
    assert_eq!(rows, 0);

    // A rebuild replaces the rows and sends readers back to the start.
    let mark = store.rebuild_mark(&app).await.unwrap();
    let rows = fresh.to_rows();
    store.replace_activity(&app, &mark, rows).await.unwrap();
    let (_, reset, _) = follow(&store, &app, cursor, &mut index).await;
    assert!(reset);
    assert_eq!(index.to_rows(), before);
}

pub async fn funnel_events_are_filtered_by_name_and_time_and_ordered<S: Store>(store: S) {
    let (app, _) = new_app(&store, "funnel").await;
    let events = vec![
        named("f1", "u2", "order_paid", "2026-11-20T10:00:05Z"),
        named("f2", "u1", "view_item", "2026-11-20T10:00:00Z"),
        named("f3", "u2", "view_item", "2026-11-20T10:00:00Z"),
        named("f4", "u1", "launch", "2026-11-20T10:00:01Z"),
        named("f5", "u1", "order_paid", "2026-11-23T10:00:00Z"),
    ];
    store
        .ingest_events(&app, EventSource::Server, events)
        .await
        .unwrap();
    let from = at("2026-11-20T00:00:00Z").as_microsecond();
    let to = at("2026-11-21T00:00:00Z").as_microsecond();
    let names = vec!["order_paid".to_string(), "view_item".to_string()];
    let found = store
        .funnel_events(&app, &names, from, to, true)
        .await
        .unwrap();
    let seen: Vec<(u32, &str)> = found.iter().map(|e| (e.user, e.name.as_str())).collect();
    // New users of a batch take indexes in sorted order (u1 is 0); within a user, by time.
    assert_eq!(
        seen,
        [(0, "view_item"), (1, "view_item"), (1, "order_paid")]
    );
    assert_eq!(found[0].props.as_ref().unwrap()["scene"], 1001);
    assert_eq!(
        found[2].time_us,
        at("2026-11-20T10:00:05Z").as_microsecond()
    );
    let without = store
        .funnel_events(&app, &names, from, to, false)
        .await
        .unwrap();
    assert!(without.iter().all(|e| e.props.is_none()));
}
