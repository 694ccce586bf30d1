//! Every analytics report checked against plain SQL over the raw events, on both
//! stores: the reference turns event times into local days with a calendar table
//! (each day's first and last instant, computed with jiff), then counts with GROUP BY.
//! The data includes events at 23:59:59.999999 and 00:00:00 local time, events sent
//! out of order and twice, huiliu's own `$` events (never activity), and, for
//! America/Los_Angeles, the weeks around the latest daylight-saving change.

use crate::helpers::*;
use huiliu_domain::analytics::LocalDay;
use huiliu_server::analytics::{compact_app, rebuild_index};
use huiliu_store::Store;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

const DAY_US: i64 = 86_400_000_000;

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn day_number(date: Date) -> i64 {
    i64::from(LocalDay::from_date(date).number())
}

fn date_of(number: i64) -> Date {
    Date::constant(1970, 1, 1)
        .checked_add(Span::new().days(number))
        .unwrap()
}

/// First instant of a local day, computed with jiff's own zoned arithmetic.
fn day_start_us(zone: &TimeZone, date: Date) -> i64 {
    date.to_zoned(zone.clone())
        .unwrap()
        .timestamp()
        .as_microsecond()
}

fn today(zone: &TimeZone) -> i64 {
    day_number(Timestamp::now().to_zoned(zone.clone()).date())
}

/// Users arriving over `[first, last]`, active on later days with a decaying chance,
/// each active day a launch and sometimes a view → cart → paid path; some events at
/// the very edges of local days.
fn dataset(zone: &TimeZone, first: i64, last: i64, seed: u64) -> Vec<Value> {
    let mut rng = Rng(seed);
    let now_us = Timestamp::now().as_microsecond();
    let mut events = Vec::new();
    for user in 0..90 {
        let arrival = first + rng.below((last - first + 1) as u64) as i64;
        let stickiness = rng.below(70);
        for day in arrival..=last {
            if day > arrival && !rng.chance(stickiness.saturating_sub((day - arrival) as u64 * 2)) {
                continue;
            }
            let start = day_start_us(zone, date_of(day));
            let end = day_start_us(zone, date_of(day + 1));
            let at = |rng: &mut Rng| match rng.below(6) {
                0 => start,
                1 => end - 1,
                _ => start + (rng.below(((end - start) / 1_000_000) as u64) as i64) * 1_000_000,
            };
            let mut push = |name: &str, time: i64, props: Value| {
                if time <= now_us + DAY_US / 2 {
                    events.push(json!({
                        "id": format!("e{}", events.len()),
                        "user_id": format!("user-{user}"),
                        "name": name,
                        "time": Timestamp::from_microsecond(time).unwrap().to_string(),
                        "props": props,
                    }));
                }
            };
            let launch = at(&mut rng);
            push("launch", launch, json!({}));
            if rng.chance(40) {
                let t = launch.min(end - 3_000_000);
                push("view_item", t, json!({}));
                if rng.chance(60) {
                    push(
                        "add_to_cart",
                        t + rng.below(2) as i64 * 1_000_000,
                        json!({}),
                    );
                    if rng.chance(50) {
                        let channel = if rng.chance(50) { "share" } else { "ad" };
                        push(
                            "order_paid",
                            t + 2_000_000 + rng.below(3) as i64 * DAY_US / 3,
                            json!({"channel": channel, "amount_fen": 990}),
                        );
                    }
                }
            }
            if rng.chance(30) {
                push("$message_sent", at(&mut rng), json!({}));
            }
        }
    }
    // Users only huiliu itself ever recorded something about: never active.
    for user in 0..3 {
        events.push(json!({
            "id": format!("internal-{user}"),
            "user_id": format!("silent-{user}"),
            "name": "$message_sent",
            "time": Timestamp::from_microsecond(day_start_us(zone, date_of(first + 1))).unwrap().to_string(),
        }));
    }
    events
}

/// Sends the events in shuffled batches (older events after newer ones), then
/// sends a few batches again.
async fn ingest(app: &TestApp, mut events: Vec<Value>, seed: u64) {
    let mut rng = Rng(seed ^ 0x9e37_79b9);
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let batches: Vec<&[Value]> = events.chunks(97).collect();
    for batch in batches.iter().chain(batches.iter().take(3)) {
        let (status, body) = app.post_events(json!(batch)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rejected"], json!([]), "{body}");
    }
}

/// The reference: the store's own database, read with plain SQL.
enum RefDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RefDb {
    async fn open(url: &str) -> Self {
        if url.starts_with("sqlite") {
            RefDb::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            RefDb::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            RefDb::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            RefDb::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Rows of integers (NULL read as 0).
    async fn rows(&self, sql: &str) -> Vec<Vec<i64>> {
        use sqlx::Row;
        match self {
            RefDb::Sqlite(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<i64>, _>(i).unwrap().unwrap_or(0))
                        .collect()
                })
                .collect(),
            RefDb::Postgres(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<i64>, _>(i).unwrap().unwrap_or(0))
                        .collect()
                })
                .collect(),
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        self.rows(sql).await[0][0]
    }

    /// A top-level string prop of events row `alias`.
    fn prop(&self, alias: &str, key: &str) -> String {
        match self {
            RefDb::Sqlite(_) => format!("json_extract({alias}.props, '$.{key}')"),
            RefDb::Postgres(_) => format!("(({alias}.props)::jsonb ->> '{key}')"),
        }
    }
}

/// Builds `ref_activity (u, d)`: distinct users active per local day, and
/// `ref_first (u, f)` / `ref_last (u, l)`: each user's first and last active day.
async fn reference(app: &TestApp, zone: &TimeZone, first: i64, last: i64) -> RefDb {
    let db = RefDb::open(&app.url).await;
    db.exec("CREATE TABLE ref_calendar (d BIGINT NOT NULL, start_us BIGINT NOT NULL, end_us BIGINT NOT NULL)")
        .await;
    let rows: Vec<String> = (first - 2..=last + 2)
        .map(|d| {
            format!(
                "({d}, {}, {})",
                day_start_us(zone, date_of(d)),
                day_start_us(zone, date_of(d + 1))
            )
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO ref_calendar VALUES {}",
        rows.join(", ")
    ))
    .await;
    db.exec(&format!(
        "CREATE TABLE ref_activity AS
         SELECT DISTINCT e.user_index AS u, c.d AS d FROM events e
         JOIN ref_calendar c ON e.time_us >= c.start_us AND e.time_us < c.end_us
         WHERE e.app_seq = {} AND e.name NOT LIKE '$%'",
        app.app.store_key
    ))
    .await;
    db.exec(
        "CREATE TABLE ref_first AS SELECT u, min(d) AS f, max(d) AS l FROM ref_activity GROUP BY u",
    )
    .await;
    let unplaced = db
        .count(&format!(
            "SELECT count(*) FROM events e WHERE e.app_seq = {} AND NOT EXISTS
             (SELECT 1 FROM ref_calendar c WHERE e.time_us >= c.start_us AND e.time_us < c.end_us)",
            app.app.store_key
        ))
        .await;
    assert_eq!(unplaced, 0, "the calendar covers every event");
    db
}

fn int(value: &Value) -> Option<i64> {
    value.as_i64()
}

async fn check_active(app: &TestApp, db: &RefDb, first: i64, last: i64, today: i64) {
    let (status, body) = app
        .get(
            &format!(
                "/v1/analytics/active?from={}&to={}",
                date_of(first),
                date_of(last + 1)
            ),
            Some(&app.secret_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len() as i64, last + 1 - first + 1);
    for day in days {
        let d = day_number(day["date"].as_str().unwrap().parse().unwrap());
        if d > today {
            assert_eq!(day["dau"], Value::Null, "{day}");
            continue;
        }
        let distinct = |width: i64| {
            format!(
                "SELECT count(DISTINCT u) FROM ref_activity WHERE d BETWEEN {} AND {d}",
                d - width + 1
            )
        };
        assert_eq!(
            int(&day["dau"]),
            Some(db.count(&distinct(1)).await),
            "dau {day}"
        );
        assert_eq!(
            int(&day["wau"]),
            Some(db.count(&distinct(7)).await),
            "wau {day}"
        );
        assert_eq!(
            int(&day["mau"]),
            Some(db.count(&distinct(30)).await),
            "mau {day}"
        );
        let new = db
            .count(&format!("SELECT count(*) FROM ref_first WHERE f = {d}"))
            .await;
        assert_eq!(int(&day["new"]), Some(new), "new {day}");
    }
}

/// Period number of a day: days for `day`, Monday-based weeks for `week`
/// (1970-01-01 was a Thursday, so `(d + 3) / 7` changes on Mondays).
fn period_sql(column: &str, period: &str) -> String {
    match period {
        "day" => column.to_string(),
        _ => format!("(({column} + 3) / 7)"),
    }
}

fn period_of(d: i64, period: &str) -> i64 {
    match period {
        "day" => d,
        _ => (d + 3).div_euclid(7),
    }
}

async fn check_retention(
    app: &TestApp,
    db: &RefDb,
    first: i64,
    last: i64,
    today: i64,
    period: &str,
) {
    let max = 40;
    let (pf, pa, pl) = (
        period_sql("f.f", period),
        period_sql("a.d", period),
        period_sql("f.l", period),
    );
    // Per cohort: members' periods of activity (n_day) and latest period (unbounded).
    let mut active: HashMap<(i64, i64), i64> = HashMap::new();
    for row in db
        .rows(&format!(
            "SELECT {pf}, {pa} - {pf}, count(DISTINCT f.u) FROM ref_first f JOIN ref_activity a ON a.u = f.u GROUP BY {pf}, {pa} - {pf}"
        ))
        .await
    {
        active.insert((row[0], row[1]), row[2]);
    }
    let mut latest: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in db
        .rows(&format!("SELECT {pf}, {pl} - {pf} FROM ref_first f"))
        .await
    {
        latest.entry(row[0]).or_default().push(row[1]);
    }
    let today_period = period_of(today, period);
    for mode in ["n_day", "unbounded"] {
        let (status, body) = app
            .get(
                &format!(
                    "/v1/analytics/retention?from={}&to={}&max_day={max}&period={period}&mode={mode}",
                    date_of(first),
                    date_of(last)
                ),
                Some(&app.secret_key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let cohorts = body["cohorts"].as_array().unwrap();
        assert!(!cohorts.is_empty());
        for cohort in cohorts {
            let start = day_number(cohort["date"].as_str().unwrap().parse().unwrap());
            let c = period_of(start, period);
            if period == "week" {
                assert_eq!(date_of(start).weekday(), jiff::civil::Weekday::Monday);
            }
            let size = active.get(&(c, 0)).copied().unwrap_or(0);
            assert_eq!(int(&cohort["size"]), Some(size), "{mode} {cohort}");
            let retained = cohort["retained"].as_array().unwrap();
            assert_eq!(retained.len(), max + 1);
            assert_eq!(int(&retained[0]), Some(size));
            for (k, cell) in retained.iter().enumerate().skip(1) {
                let k = k as i64;
                // A period counts once it is over: its last day is before today.
                let over = c + k < today_period;
                if !over {
                    assert_eq!(*cell, Value::Null, "{mode} cohort {start} k {k}");
                    continue;
                }
                let expected = match mode {
                    "n_day" => active.get(&(c, k)).copied().unwrap_or(0),
                    _ => latest
                        .get(&c)
                        .map_or(0, |ls| ls.iter().filter(|&&l| l >= k).count() as i64),
                };
                assert_eq!(
                    int(cell),
                    Some(expected),
                    "{mode} {period} cohort {} k {k}",
                    date_of(start)
                );
            }
        }
    }
}

async fn check_lifecycle(
    app: &TestApp,
    db: &RefDb,
    first: i64,
    last: i64,
    today: i64,
    period: &str,
) {
    let (status, body) = app
        .get(
            &format!(
                "/v1/analytics/lifecycle?from={}&to={}&period={period}",
                date_of(first),
                date_of(last)
            ),
            Some(&app.secret_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (pa, pf) = (period_sql("d", period), period_sql("f", period));
    for row in body["periods"].as_array().unwrap() {
        let start = day_number(row["date"].as_str().unwrap().parse().unwrap());
        let p = period_of(start, period);
        if start > today {
            assert_eq!(row["active"], Value::Null);
            continue;
        }
        let in_period = |p: i64| format!("SELECT DISTINCT u FROM ref_activity WHERE {pa} = {p}");
        let new = db
            .count(&format!("SELECT count(*) FROM ref_first WHERE {pf} = {p}"))
            .await;
        let returning = db
            .count(&format!(
                "SELECT count(*) FROM ({}) x WHERE x.u IN ({})",
                in_period(p),
                in_period(p - 1)
            ))
            .await;
        let resurrecting = db
            .count(&format!(
                "SELECT count(*) FROM ({}) x JOIN ref_first r ON r.u = x.u WHERE x.u NOT IN ({}) AND {} < {p}",
                in_period(p),
                in_period(p - 1),
                period_sql("r.f", period)
            ))
            .await;
        let dormant = db
            .count(&format!(
                "SELECT count(*) FROM ({}) x WHERE x.u NOT IN ({})",
                in_period(p - 1),
                in_period(p)
            ))
            .await;
        let got: Vec<Option<i64>> = ["new", "returning", "resurrecting", "dormant"]
            .iter()
            .map(|k| int(&row[k]))
            .collect();
        assert_eq!(
            got,
            [
                Some(new),
                Some(returning),
                Some(resurrecting),
                Some(dormant)
            ],
            "{period} {row}"
        );
    }
}

async fn check_one_and_done(app: &TestApp, db: &RefDb, first: i64, today: i64) {
    let min_age = 5;
    let (status, body) = app
        .get(
            &format!(
                "/v1/analytics/one-and-done?min_age_days={min_age}&from={}",
                date_of(first)
            ),
            Some(&app.secret_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let expected = db
        .rows(&format!(
            "SELECT f, count(*), sum(CASE WHEN l = f THEN 1 ELSE 0 END) FROM ref_first
             WHERE f >= {first} AND f <= {} GROUP BY f ORDER BY f",
            today - min_age
        ))
        .await;
    let cohorts = body["cohorts"].as_array().unwrap();
    let got: Vec<Vec<i64>> = cohorts
        .iter()
        .filter(|c| c["size"].as_i64() != Some(0))
        .map(|c| {
            vec![
                day_number(c["date"].as_str().unwrap().parse().unwrap()),
                c["size"].as_i64().unwrap(),
                c["never_returned"].as_i64().unwrap(),
            ]
        })
        .collect();
    assert_eq!(got, expected);
    let users: i64 = expected.iter().map(|r| r[1]).sum();
    let never: i64 = expected.iter().map(|r| r[2]).sum();
    assert_eq!(
        (int(&body["users"]), int(&body["never_returned"])),
        (Some(users), Some(never))
    );
    assert!(users > 0, "the data has cohorts old enough");
}

async fn check_funnel(app: &TestApp, db: &RefDb, zone: &TimeZone, first: i64, last: i64) {
    let window_us = DAY_US / 2;
    let entry = (
        day_start_us(zone, date_of(first)),
        day_start_us(zone, date_of(last + 1)),
    );
    let after = |later: &str, earlier: &str| {
        format!(
            "{later}.app_seq = {earlier}.app_seq AND {later}.user_index = {earlier}.user_index
             AND ({later}.time_us > {earlier}.time_us OR ({later}.time_us = {earlier}.time_us AND {later}.seq > {earlier}.seq))
             AND {later}.time_us <= e1.time_us + {window_us}"
        )
    };
    let base = format!(
        "FROM events e1 WHERE e1.app_seq = {} AND e1.name = 'view_item' AND e1.time_us >= {} AND e1.time_us < {}",
        app.app.store_key, entry.0, entry.1
    );
    let step1 = format!("SELECT count(DISTINCT e1.user_index) {base}");
    let e2 = format!(
        "EXISTS (SELECT 1 FROM events e2 WHERE e2.name = 'add_to_cart' AND {}",
        after("e2", "e1")
    );
    let step2 = format!("{step1} AND {e2})");
    let step3 = |filter: &str| {
        format!(
            "{step1} AND {e2} AND EXISTS (SELECT 1 FROM events e3 WHERE e3.name = 'order_paid' {filter} AND {}))",
            after("e3", "e2")
        )
    };
    let share = format!("AND {} = 'share'", db.prop("e3", "channel"));
    let expected_plain = vec![
        db.count(&step1).await,
        db.count(&step2).await,
        db.count(&step3("")).await,
    ];
    let expected_share = vec![
        expected_plain[0],
        expected_plain[1],
        db.count(&step3(&share)).await,
    ];
    assert!(expected_plain[2] > 0, "the data converts");
    for (steps, expected) in [
        (
            "view_item,add_to_cart,order_paid".to_string(),
            expected_plain,
        ),
        (
            r#"["view_item","add_to_cart",{"event":"order_paid","where":{"channel":"share"}}]"#
                .to_string(),
            expected_share,
        ),
    ] {
        let (status, body) = app
            .get(
                &format!(
                    "/v1/analytics/funnel?steps={}&window=12h&from={}&to={}",
                    urlencode(&steps),
                    date_of(first),
                    date_of(last)
                ),
                Some(&app.secret_key),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let got: Vec<i64> = body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["users"].as_i64().unwrap())
            .collect();
        assert_eq!(got, expected, "{steps}");
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn check_everything(app: &TestApp, db: &RefDb, zone: &TimeZone, first: i64, last: i64) {
    let today = today(zone);
    check_active(app, db, first, last, today).await;
    for period in ["day", "week"] {
        check_retention(app, db, first, last, today, period).await;
        check_lifecycle(app, db, first, last, today, period).await;
    }
    check_one_and_done(app, db, first, today).await;
    check_funnel(app, db, zone, first, last).await;
}

/// Ingests, checks every report, then checks again after compaction and after a
/// rebuild from raw events (each must leave the index as it was).
async fn cross_check(app: TestApp, zone_name: &str, first: i64, last: i64, seed: u64) {
    let zone = TimeZone::get(zone_name).unwrap();
    ingest(&app, dataset(&zone, first, last, seed), seed).await;
    let db = reference(&app, &zone, first, last).await;
    check_everything(&app, &db, &zone, first, last).await;
    let merged = compact_app(&app.store, &app.app).await.unwrap();
    assert!(merged > 0, "batches left rows to merge");
    check_everything(&app, &db, &zone, first, last).await;
    let report = rebuild_index(&app.store, &app.app, |_| {}).await.unwrap();
    assert!(report.events > 0 && report.active_users > 0);
    check_everything(&app, &db, &zone, first, last).await;
}

/// The latest local day (before yesterday) on which the zone's UTC offset changes.
fn latest_offset_change(zone: &TimeZone) -> i64 {
    let mut day = today(zone) - 2;
    loop {
        let length = day_start_us(zone, date_of(day + 1)) - day_start_us(zone, date_of(day));
        if length != DAY_US {
            return day;
        }
        day -= 1;
    }
}

mod reports_match_sql {
    use super::*;

    async fn shanghai(backend: Backend) {
        let Some(app) = spawn_app(backend, "Asia/Shanghai").await else {
            return;
        };
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let today = super::today(&zone);
        cross_check(app, "Asia/Shanghai", today - 45, today, 7).await;
    }

    async fn los_angeles_across_daylight_saving(backend: Backend) {
        let Some(app) = spawn_app(backend, "America/Los_Angeles").await else {
            return;
        };
        let zone = TimeZone::get("America/Los_Angeles").unwrap();
        let change = latest_offset_change(&zone);
        let last = (change + 20).min(super::today(&zone));
        cross_check(app, "America/Los_Angeles", change - 20, last, 11).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shanghai_sqlite() {
        shanghai(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shanghai_postgres() {
        shanghai(Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn los_angeles_sqlite() {
        los_angeles_across_daylight_saving(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn los_angeles_postgres() {
        los_angeles_across_daylight_saving(Backend::Postgres).await;
    }
}

crate::both_stores! {
    async fn bad_parameters_get_a_4xx_naming_the_parameter(app: TestApp) {
        for (query, status, field) in [
            ("/v1/analytics/active?from=2026-11-30&to=2026-11-01", 422, "from"),
            ("/v1/analytics/active?from=2024-01-01&to=2026-11-01", 422, "to"),
            ("/v1/analytics/active?from=yesterday", 422, "from"),
            ("/v1/analytics/active?form=2026-11-01", 400, "form"),
            ("/v1/analytics/active?from=2026-11-01&from=2026-11-02", 400, "from"),
            ("/v1/analytics/retention?max_day=181", 422, "max_day"),
            ("/v1/analytics/retention?max_day=-1", 422, "max_day"),
            ("/v1/analytics/retention?period=month", 422, "period"),
            ("/v1/analytics/retention?mode=cumulative", 422, "mode"),
            ("/v1/analytics/lifecycle?period=hour", 422, "period"),
            ("/v1/analytics/one-and-done?min_age_days=0", 422, "min_age_days"),
            ("/v1/analytics/funnel", 422, "steps"),
            ("/v1/analytics/funnel?steps=launch", 422, "steps"),
            ("/v1/analytics/funnel?steps=launch,Bad%20Name", 422, "steps[1].event"),
            ("/v1/analytics/funnel?steps=a,b&window=100d", 422, "window"),
            ("/v1/analytics/funnel?steps=%5B%22a%22%2C%7B%22event%22%3A%22b%22%2C%22where%22%3A%7B%22x%22%3Anull%7D%7D%5D", 422, "steps[1].where.x"),
        ] {
            let (got, body) = app.get(query, Some(&app.secret_key)).await;
            assert_eq!(got, status, "{query}: {body}");
            assert_eq!(body["error"]["field"].as_str(), Some(field), "{query}: {body}");
        }
        let (status, _) = app.get("/v1/analytics/active", Some(&app.publishable_key)).await;
        assert_eq!(status, 403, "analytics need the secret key");
        let (status, _) = app.get("/v1/analytics/active", None).await;
        assert_eq!(status, 401);
    }

    async fn an_app_never_sees_another_app_s_activity(app: TestApp) {
        let (status, _) = app.post_events(json!([event("e1", "alice"), event("e2", "bob")])).await;
        assert_eq!(status, 200);
        let (_, mine) = app.get("/v1/analytics/active?from=2026-01-01", Some(&app.secret_key)).await;
        let today = mine["days"].as_array().unwrap().iter().rev().find(|d| !d["dau"].is_null()).unwrap().clone();
        assert!(today["mau"].as_i64().unwrap() >= 1, "{mine}");
        let (_, other_key) = app.other_app().await;
        let (status, theirs) = app.get("/v1/analytics/active?from=2026-01-01", Some(&other_key)).await;
        assert_eq!(status, 200);
        assert!(theirs["days"].as_array().unwrap().iter().all(|d| d["mau"].is_null() || d["mau"] == 0), "{theirs}");
    }

    async fn settings_choose_activity_and_a_rebuild_applies_them_to_history(app: TestApp) {
        let now = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let events = json!([
            {"id": "h1", "user_id": "heartbeat-only", "name": "heartbeat", "time": now.to_string()},
            {"id": "l1", "user_id": "launcher", "name": "launch", "time": now.to_string()},
        ]);
        assert_eq!(app.post_events(events).await.0, 200);
        let dau = |body: &Value| body["days"].as_array().unwrap().iter().rev().find(|d| !d["dau"].is_null()).unwrap()["dau"].as_i64();
        let (_, before) = app.get("/v1/analytics/active", Some(&app.secret_key)).await;
        assert_eq!(dau(&before), Some(2));

        let response = app.client.put(format!("{}/v1/analytics/settings", app.base)).bearer_auth(&app.secret_key)
            .body(r#"{"excluded_events": ["heartbeat"], "tracked_events": ["order_paid", "Bad"]}"#).send().await.unwrap();
        assert_eq!(response.status(), 422);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "tracked_events[1]");
        let response = app.client.put(format!("{}/v1/analytics/settings", app.base)).bearer_auth(&app.secret_key)
            .body(r#"{"excluded_events": ["heartbeat"], "tracked_events": ["order_paid"]}"#).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let (_, settings) = app.get("/v1/analytics/settings", Some(&app.secret_key)).await;
        assert_eq!(settings["excluded_events"], json!(["heartbeat"]));

        // Stored history keeps its place until the index is rebuilt with the new settings.
        let app_record = app.store.find_app(&app.app.id).await.unwrap().unwrap();
        rebuild_index(&app.store, &app_record, |_| {}).await.unwrap();
        let (_, after) = app.get("/v1/analytics/active", Some(&app.secret_key)).await;
        assert_eq!(dau(&after), Some(1), "{after}");
    }
}

crate::both_stores! {
    async fn an_evicted_index_is_read_again_whole(app: TestApp) {
        assert_eq!(app.post_events(json!([event("e1", "alice"), event("e2", "bob")])).await.0, 200);
        let (other, other_key) = app.other_app().await;
        let response = app.client.post(format!("{}/v1/events", app.base)).bearer_auth(&other_key)
            .body(json!({"events": [event("o1", "carol")]}).to_string()).send().await.unwrap();
        assert_eq!(response.status(), 200);

        let cache = huiliu_server::analytics::ActivityCache::with_capacity(1);
        let first = cache.fresh(&app.store, &app.app).await.unwrap().index.to_rows();
        assert!(!first.is_empty());
        let theirs = cache.fresh(&app.store, &other).await.unwrap().index.to_rows();
        assert_ne!(theirs, first);
        assert_eq!(cache.len(), 1, "the first app was dropped");
        let again = cache.fresh(&app.store, &app.app).await.unwrap().index.to_rows();
        assert_eq!(again, first);
    }
}
