//! Contract case for the points ledger: random operations from concurrent
//! clients, each request sent more than once, at times that make lots expire
//! and holds time out; afterwards every account's books must balance.

use crate::points::{Cause, PointsAction, PointsOutcome, PointsRequest, SettleRequest, Settlement};
use crate::{IdempotencyKey, Store};
use huiliu_domain::apps::NewApp;
use huiliu_domain::ids::UserId;
use huiliu_domain::time::AppTimeZone;
use huiliu_domain::users::ProfilePatch;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};

const S: i64 = 1_000_000;
const T0: i64 = 1_795_000_000 * S;
const USERS: usize = 3;

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: text.to_string(),
        request_hash: huiliu_domain::messages::request_hash(&[text]),
    }
}

/// Seeded random clients hammer three users with earns (some pending, some
/// expiring), spends, holds, captures, releases and reversals, every request
/// sent twice (sometimes at once); the clock moves so lots expire and holds time
/// out; the sweep runs in between. Then, per user: the answers to a request and
/// its retry are the same, Σ entries = balance + pending + on hold − … as the
/// ledger defines it, i.e. Σ entries equals the summary's balance + pending +
/// on_hold + expired-but-unswept, and the balance is never below −debt.
pub async fn ledger_books_balance_under_retries_and_interleavings<St: Store>(store: St) {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::from_os_rng();
    let plan = NewApp::generate("ledger", AppTimeZone::default(), &mut rng).unwrap();
    let app = store.create_app(&plan).await.unwrap();
    for u in 0..USERS {
        store
            .update_user_profile(
                &app,
                &UserId::parse(format!("u{u}")).unwrap(),
                &ProfilePatch::parse(&serde_json::json!({})).unwrap(),
            )
            .await
            .unwrap();
    }
    let clock = Arc::new(std::sync::atomic::AtomicI64::new(T0));
    let entries_seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (store, app, clock, seen) = (
                store.clone(),
                app.clone(),
                clock.clone(),
                entries_seen.clone(),
            );
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(c * 7919 + 17);
                for i in 0..60 {
                    let now = clock.fetch_add(
                        rng.random_range(0..3) * S,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let user = UserId::parse(format!("u{}", rng.random_range(0..USERS))).unwrap();
                    let op = rng.random_range(0..10);
                    let known: Vec<i64> = seen.lock().unwrap().clone();
                    let outcome = if op < 6 || known.is_empty() {
                        let amount = rng.random_range(1..60);
                        let action = match op {
                            0..=2 => PointsAction::Earn {
                                amount,
                                expires_us: rng
                                    .random_bool(0.3)
                                    .then(|| now + rng.random_range(1..20) * S),
                                vests_us: rng
                                    .random_bool(0.2)
                                    .then(|| now + rng.random_range(1..10) * S),
                            },
                            3 | 4 => PointsAction::Spend { amount },
                            _ => PointsAction::Hold {
                                amount,
                                times_out_us: now + rng.random_range(1..10) * S,
                            },
                        };
                        let request = PointsRequest {
                            user_id: user,
                            action,
                            reason: "contract".into(),
                            cause: Cause::new("api", None),
                            now_us: now,
                            idempotency: key(&format!("c{c}-{i}")),
                        };
                        // Sent twice: at once, or one after the other.
                        let (first, second) = if rng.random_bool(0.5) {
                            tokio::join!(
                                store.points_transaction(&app, &request),
                                store.points_transaction(&app, &request)
                            )
                        } else {
                            let first = store.points_transaction(&app, &request).await;
                            (first, store.points_transaction(&app, &request).await)
                        };
                        let (first, second) = (first.unwrap(), second.unwrap());
                        match (&first, &second) {
                            (
                                PointsOutcome::Done(a) | PointsOutcome::Replayed(a),
                                PointsOutcome::Done(b) | PointsOutcome::Replayed(b),
                            ) => {
                                assert_eq!(a, b, "a retry answers as the first");
                            }
                            (
                                PointsOutcome::Insufficient { .. },
                                PointsOutcome::Insufficient { .. },
                            ) => {}
                            // A refusal writes nothing, so a retry may fit after
                            // another client's earn: never the other way round.
                            (PointsOutcome::Insufficient { .. }, PointsOutcome::Done(_)) => {}
                            other => panic!("a retry changed its answer: {other:?}"),
                        }
                        first
                    } else {
                        let entry = known[rng.random_range(0..known.len())];
                        let action = [
                            Settlement::Capture,
                            Settlement::Release,
                            Settlement::Reverse,
                        ][rng.random_range(0..3)];
                        let request = SettleRequest {
                            entry,
                            action,
                            reason: "contract".into(),
                            cause: Cause::new("api", None),
                            now_us: now,
                        };
                        let (first, second) = tokio::join!(
                            store.points_settle(&app, &request),
                            store.points_settle(&app, &request)
                        );
                        let (first, second) = (first.unwrap(), second.unwrap());
                        if let (
                            PointsOutcome::Done(a) | PointsOutcome::Replayed(a),
                            PointsOutcome::Done(b) | PointsOutcome::Replayed(b),
                        ) = (&first, &second)
                        {
                            assert_eq!(a, b, "a settlement and its retry answer the same");
                        }
                        first
                    };
                    if let PointsOutcome::Done(receipt) = outcome {
                        let seq: i64 = receipt
                            .transaction_id
                            .trim_start_matches("ptx_")
                            .parse()
                            .unwrap();
                        seen.lock().unwrap().push(seq);
                    }
                    if i % 20 == 19 {
                        store
                            .points_sweep(clock.load(std::sync::atomic::Ordering::Relaxed), 100)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // Long after every hold timed out and every lot expired or vested: the sweep
    // settles everything, and the books are checked.
    let later = clock.load(std::sync::atomic::Ordering::Relaxed) + 100 * S;
    while store.points_sweep(later, 100).await.unwrap() > 0 {}
    for u in 0..USERS {
        let user = UserId::parse(format!("u{u}")).unwrap();
        let summary = store
            .points_summary(&app, &user, later)
            .await
            .unwrap()
            .unwrap();
        let history = store
            .points_history(&app, &user, i64::MAX, 10_000)
            .await
            .unwrap()
            .unwrap();
        let sum: i64 = history.iter().map(|e| e.amount).sum();
        assert_eq!(summary.on_hold, 0, "every hold settled");
        assert_eq!(summary.pending, 0, "every pending earn vested or voided");
        assert_eq!(
            sum, summary.balance,
            "Σ entries = balance for u{u}: {summary:?}"
        );
        assert!(summary.balance >= -summary.debt, "never below the debt");
        if summary.debt == 0 {
            assert!(summary.balance >= 0);
        }
        // Every hold is settled exactly once.
        for hold in history.iter().filter(|e| e.kind == "hold") {
            let settlements = history
                .iter()
                .filter(|e| {
                    e.refers_to == Some(hold.seq) && (e.kind == "capture" || e.kind == "release")
                })
                .count();
            assert_eq!(
                settlements, 1,
                "hold ptx_{} settled {settlements} times",
                hold.seq
            );
        }
        // Nothing is reversed twice.
        let mut reversed: Vec<i64> = history
            .iter()
            .filter(|e| e.kind == "reverse" || e.kind == "void")
            .filter_map(|e| e.refers_to)
            .collect();
        let all = reversed.len();
        reversed.sort_unstable();
        reversed.dedup();
        assert_eq!(reversed.len(), all, "an entry reversed twice");
    }
}
