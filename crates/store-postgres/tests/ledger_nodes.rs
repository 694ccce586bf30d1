//! Two nodes writing one PostgreSQL ledger at once: each has its own batcher,
//! so the same requests (retries that reach another node) race in separate
//! batches. Every request and its twin must answer the same, nothing may be
//! counted twice, and the books must balance.

use huiliu_domain::apps::NewApp;
use huiliu_domain::ids::UserId;
use huiliu_domain::time::AppTimeZone;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::points::{Cause, PointsAction, PointsOutcome, PointsRequest};
use huiliu_store::{IdempotencyKey, Store};
use huiliu_store_postgres::PostgresStore;

const USERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_the_same_requests_count_each_once() {
    let Some(url) = huiliu_store::testdb::fresh_postgres_url().await else {
        return;
    };
    let (a, b) = (
        PostgresStore::open_with_pool_size(&url, 8).await.unwrap(),
        PostgresStore::open_with_pool_size(&url, 8).await.unwrap(),
    );
    let plan = NewApp::generate("nodes", AppTimeZone::default(), &mut rand::rng()).unwrap();
    let app = a.create_app(&plan).await.unwrap();
    for u in 0..USERS {
        a.update_user_profile(
            &app,
            &UserId::parse(format!("u{u}")).unwrap(),
            &ProfilePatch::parse(&serde_json::json!({})).unwrap(),
        )
        .await
        .unwrap();
    }
    let request = |i: usize| {
        // Earns, then spends of part of what was earned, over few users so that
        // batches share accounts.
        let amount = (i % 7 + 1) as i64 * 10;
        let action = if i % 3 == 2 {
            PointsAction::Spend { amount: 5 }
        } else {
            PointsAction::Earn {
                amount,
                expires_us: None,
                vests_us: None,
            }
        };
        let key = format!("k{i}");
        PointsRequest {
            user_id: UserId::parse(format!("u{}", i % USERS)).unwrap(),
            action,
            reason: "race".into(),
            cause: Cause::new("api", None),
            now_us: 1_795_000_000_000_000 + i as i64,
            idempotency: IdempotencyKey {
                request_hash: huiliu_domain::messages::request_hash(&[&key]),
                key,
            },
        }
    };
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (a, b, app, request) = (a.clone(), b.clone(), app.clone(), request(i));
            tokio::spawn(async move {
                let (first, second) = tokio::join!(
                    a.points_transaction(&app, &request),
                    b.points_transaction(&app, &request)
                );
                (request, first.unwrap(), second.unwrap())
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        let (request, first, second) = task.await.unwrap();
        match (&first, &second) {
            (
                PointsOutcome::Done(x) | PointsOutcome::Replayed(x),
                PointsOutcome::Done(y) | PointsOutcome::Replayed(y),
            ) => {
                assert_eq!(
                    x, y,
                    "{}: both nodes answer the same",
                    request.idempotency.key
                );
                done += 1;
            }
            // A refused spend writes nothing and keeps no key, so its twin may
            // go through once the other node's earns have committed.
            (PointsOutcome::Insufficient { .. }, PointsOutcome::Insufficient { .. }) => {}
            (
                PointsOutcome::Insufficient { .. },
                PointsOutcome::Done(_) | PointsOutcome::Replayed(_),
            )
            | (
                PointsOutcome::Done(_) | PointsOutcome::Replayed(_),
                PointsOutcome::Insufficient { .. },
            ) => {
                done += 1;
            }
            other => panic!("unexpected answers: {other:?}"),
        }
    }
    assert!(done >= 300, "most requests went through: {done}");
    for u in 0..USERS {
        let user = UserId::parse(format!("u{u}")).unwrap();
        let summary = a
            .points_summary(&app, &user, i64::MAX / 2)
            .await
            .unwrap()
            .unwrap();
        let history = a
            .points_history(&app, &user, i64::MAX, 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            history.iter().map(|e| e.amount).sum::<i64>(),
            summary.balance,
            "u{u}"
        );
        assert!(summary.balance >= 0);
        let mut keys: Vec<i64> = history.iter().map(|e| e.seq).collect();
        keys.dedup();
        assert_eq!(keys.len(), history.len());
    }
    // Every key was written once: as many earn and spend entries as accepted requests.
    let entries: usize = {
        let mut n = 0;
        for u in 0..USERS {
            let user = UserId::parse(format!("u{u}")).unwrap();
            n += a
                .points_history(&app, &user, i64::MAX, 10_000)
                .await
                .unwrap()
                .unwrap()
                .len();
        }
        n
    };
    assert_eq!(
        entries, done,
        "each accepted request wrote exactly one entry"
    );
}
