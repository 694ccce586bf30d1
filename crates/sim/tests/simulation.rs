//! Properties of whole simulations: determinism, time zones, numbering,
//! referral links, fraud rings, and the figures each shipped scenario stands for.

use huiliu_sim::{
    DayOfEvents, EventKind, Measure, Scenario, SimConfig, SimEvent, Simulation, Summary,
    EVENT_NAMES, SCENE_SUBSCRIPTION_MESSAGE,
};
use jiff::civil::{date, Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

fn config(seed: u64, users: u32, days: u32, start: Date, zone: &str) -> SimConfig {
    SimConfig {
        seed,
        users,
        days,
        start,
        timezone: TimeZone::get(zone).unwrap(),
    }
}

fn run(scenario: Scenario, config: SimConfig) -> (Vec<DayOfEvents>, Simulation) {
    let mut sim = Simulation::new(scenario, config).unwrap();
    let mut days = Vec::new();
    while let Some(day) = sim.next_day() {
        days.push(day);
    }
    (days, sim)
}

fn summary(name: &str, users: u32, days: u32) -> Summary {
    let (generated, sim) = run(
        Scenario::named(name).unwrap(),
        config(42, users, days, date(2026, 1, 5), "Asia/Shanghai"),
    );
    let mut measure = Measure::new();
    for day in &generated {
        measure.add_day(day);
    }
    measure.summary(Some(&sim))
}

fn local_date(event: &SimEvent, tz: &TimeZone) -> Date {
    event.timestamp().to_zoned(tz.clone()).date()
}

#[test]
fn the_same_seed_gives_identical_events_and_another_seed_does_not() {
    let make = |seed| {
        run(
            Scenario::named("referral_fraud").unwrap(),
            config(seed, 800, 21, date(2026, 3, 1), "Asia/Shanghai"),
        )
        .0
    };
    let first = make(9);
    assert_eq!(first.len(), 21);
    assert!(first.iter().map(|d| d.events.len()).sum::<usize>() > 5_000);
    assert_eq!(first, make(9));
    assert_ne!(first, make(10));
}

#[test]
fn every_shipped_scenario_runs_and_emits_only_valid_names() {
    for name in Scenario::names() {
        let (days, _) = run(
            Scenario::named(name).unwrap(),
            config(1, 300, 10, date(2026, 6, 1), "Asia/Shanghai"),
        );
        let mut seen = HashSet::new();
        for event in days.iter().flat_map(|d| &d.events) {
            let name = event.event_name();
            assert!(EVENT_NAMES.contains(&name));
            assert!(!name.is_empty() && name.len() <= 64);
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            seen.insert(name);
        }
        assert!(seen.len() >= 7, "{name} emits only {seen:?}");
    }
}

/// Every event lies in its local day, days are sorted and `seq` is the position.
fn assert_days_well_formed(days: &[DayOfEvents], tz: &TimeZone, start: Date) {
    let mut expected = start;
    let mut ids = HashSet::new();
    for day in days {
        assert_eq!(day.date, expected);
        for (i, event) in day.events.iter().enumerate() {
            assert_eq!(event.seq as usize, i);
            assert_eq!(local_date(event, tz), day.date, "{event:?}");
            if i > 0 {
                assert!(day.events[i - 1].time_us <= event.time_us);
            }
            assert!(ids.insert(event.event_id(day.date)));
        }
        expected = expected.tomorrow().unwrap();
    }
}

#[test]
fn times_stay_inside_their_local_day_across_los_angeles_dst_changes() {
    for start in [date(2026, 10, 25), date(2026, 3, 4)] {
        let config = config(5, 1_500, 10, start, "America/Los_Angeles");
        let tz = config.timezone.clone();
        let (days, _) = run(Scenario::named("healthy").unwrap(), config);
        assert_days_well_formed(&days, &tz, start);
    }
    // The 25-hour day really holds events in both copies of 01:00.
    let config = config(6, 3_000, 1, date(2026, 11, 1), "America/Los_Angeles");
    let tz = config.timezone.clone();
    let (days, _) = run(Scenario::named("healthy").unwrap(), config);
    let offsets: HashSet<i32> = days[0]
        .events
        .iter()
        .map(|e| tz.to_offset(e.timestamp()).seconds())
        .collect();
    assert_eq!(offsets.len(), 2, "{offsets:?}");
}

#[test]
fn times_stay_inside_their_local_day_in_other_zones() {
    for zone in [
        "Asia/Shanghai",
        "Australia/Lord_Howe",
        "America/Santiago",
        "UTC",
    ] {
        let start = date(2026, 4, 1);
        let config = config(8, 400, 200, start, zone);
        let tz = config.timezone.clone();
        let (days, _) = run(Scenario::named("viral").unwrap(), config);
        assert_days_well_formed(&days, &tz, start);
    }
}

#[test]
fn users_are_numbered_densely_in_order_of_arrival() {
    let (days, sim) = run(
        Scenario::named("viral").unwrap(),
        config(3, 2_000, 30, date(2026, 2, 1), "Asia/Shanghai"),
    );
    assert_eq!(
        sim.user_count(),
        2_000,
        "users is the exact total without fraud"
    );
    let mut first_seen: Vec<Option<i64>> = vec![None; 2_000];
    for event in days.iter().flat_map(|d| &d.events) {
        let slot = &mut first_seen[event.user as usize];
        if slot.is_none() {
            *slot = Some(event.time_us);
            assert!(
                matches!(event.kind, EventKind::Launch { first: Some(_), .. }),
                "a user's first event is the first launch: {event:?}"
            );
        } else {
            assert!(!matches!(
                event.kind,
                EventKind::Launch { first: Some(_), .. }
            ));
        }
    }
    let first_seen: Vec<i64> = first_seen.into_iter().map(Option::unwrap).collect();
    assert!(first_seen.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn invites_follow_a_share_by_an_earlier_user() {
    let (days, sim) = run(
        Scenario::named("referral_fraud").unwrap(),
        config(4, 3_000, 30, date(2026, 2, 1), "Asia/Shanghai"),
    );
    let mut last_share: HashMap<u32, i64> = HashMap::new();
    let mut first_share: HashMap<u32, i64> = HashMap::new();
    let mut invites = 0;
    for event in days.iter().flat_map(|d| &d.events) {
        match event.kind {
            EventKind::Share { .. } => {
                last_share.insert(event.user, event.time_us);
                first_share.entry(event.user).or_insert(event.time_us);
            }
            EventKind::InviteAccepted { inviter } => {
                invites += 1;
                assert!(inviter < event.user, "{event:?}");
                let shared = first_share.get(&inviter).copied();
                assert!(
                    shared.is_some_and(|t| t <= event.time_us),
                    "inviter {inviter} shared nothing before {event:?}"
                );
                let truth = sim.user_truth(event.user).unwrap();
                assert_eq!(truth.source, huiliu_sim::Source::Shared);
            }
            _ => {}
        }
    }
    assert!(invites > 300, "{invites}");
}

#[test]
fn fraud_rings_share_devices_and_vanish_after_the_first_day() {
    let (days, sim) = run(
        Scenario::named("referral_fraud").unwrap(),
        config(11, 2_000, 40, date(2026, 2, 1), "Asia/Shanghai"),
    );
    let ring = Scenario::named("referral_fraud").unwrap().fraud;
    let fraud_total = (ring.rings * ring.ring_size) as usize;
    assert_eq!(sim.user_count() as usize, 2_000 + fraud_total);
    let fraud: HashSet<u32> = (0..sim.user_count())
        .filter(|u| sim.user_truth(*u).unwrap().fraud)
        .collect();
    assert_eq!(fraud.len(), fraud_total);

    let mut users_per_device: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut fraud_days: HashMap<u32, HashSet<Date>> = HashMap::new();
    for day in &days {
        for event in &day.events {
            if fraud.contains(&event.user) {
                fraud_days.entry(event.user).or_default().insert(day.date);
                assert!(
                    !matches!(event.kind, EventKind::OrderPaid { .. }),
                    "ring accounts do not buy"
                );
            }
            if event.event_name() == "app_launch" {
                let device = event.props()["device_id"].as_str().unwrap().to_string();
                users_per_device
                    .entry(device)
                    .or_default()
                    .insert(event.user);
            }
        }
    }
    assert!(
        fraud_days.values().all(|d| d.len() == 1),
        "active after day one"
    );
    let crowded = users_per_device.values().filter(|u| u.len() >= 5).count();
    assert!(crowded >= ring.rings as usize * ring.devices_per_ring as usize / 2);
    assert!(users_per_device
        .values()
        .filter(|u| u.len() >= 5)
        .all(|u| u.iter().all(|user| fraud.contains(user))));
}

#[test]
fn an_opened_message_brings_the_user_back_through_scene_1014() {
    let (days, _) = run(
        Scenario::named("dormant_but_reachable").unwrap(),
        config(2, 2_000, 45, date(2026, 2, 1), "Asia/Shanghai"),
    );
    let mut opens = 0;
    for day in &days {
        let events = &day.events;
        for (i, event) in events.iter().enumerate() {
            if let EventKind::MessageOpen { .. } = event.kind {
                opens += 1;
                let launch = events[..i]
                    .iter()
                    .rev()
                    .find(|e| e.user == event.user)
                    .expect("a launch precedes the open");
                assert!(matches!(
                    launch.kind,
                    EventKind::Launch {
                        scene: SCENE_SUBSCRIPTION_MESSAGE,
                        ..
                    }
                ));
            }
        }
    }
    assert!(opens > 20, "{opens}");
}

#[test]
fn a_weekday_without_weight_has_no_activity() {
    let mut scenario = Scenario::named("healthy").unwrap();
    scenario.rhythm.weekday = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
    scenario.recall.send_rate = 0.0;
    let (days, _) = run(
        scenario,
        config(1, 1_000, 21, date(2026, 5, 4), "Asia/Shanghai"),
    );
    for day in &days {
        let weekend = matches!(day.date.weekday(), Weekday::Saturday | Weekday::Sunday);
        assert_eq!(day.events.is_empty(), weekend, "{}", day.date);
    }
}

#[test]
fn sessions_follow_the_daily_rhythm() {
    let config = config(12, 3_000, 14, date(2026, 5, 4), "Asia/Shanghai");
    let tz = config.timezone.clone();
    let (days, _) = run(Scenario::named("healthy").unwrap(), config);
    let mut by_hour = [0u32; 24];
    for event in days.iter().flat_map(|d| &d.events) {
        if event.event_name() == "app_launch" {
            by_hour[event.timestamp().to_zoned(tz.clone()).hour() as usize] += 1;
        }
    }
    assert!(by_hour[21] > 10 * by_hour[4], "{by_hour:?}");
    assert!(by_hour[12] * 2 > by_hour[15] * 3, "{by_hour:?}");
}

#[test]
fn json_lines_are_in_the_import_format() {
    let config = config(13, 300, 3, date(2026, 11, 1), "America/Los_Angeles");
    let tz = config.timezone.clone();
    let (days, _) = run(Scenario::named("viral").unwrap(), config);
    for day in &days {
        let mut text = String::new();
        day.write_jsonl(&tz, &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), day.events.len());
        for (line, event) in lines.iter().zip(&day.events) {
            assert_eq!(*line, event.to_json_line(day.date, &tz));
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let time: Timestamp = value["time"].as_str().unwrap().parse().unwrap();
            assert_eq!(time.as_microsecond(), event.time_us);
            assert_eq!(value["props"], event.props());
            assert_eq!(value["id"], event.event_id(day.date));
            if let EventKind::OrderPaid { amount_fen, .. } = event.kind {
                assert!(amount_fen > 0);
                assert!(value["props"]["amount_fen"].is_i64());
            }
        }
    }
}

#[test]
fn the_shipped_scenarios_differ_as_their_names_say() {
    let healthy = summary("healthy", 4_000, 75);
    let leaky = summary("leaky_bucket", 4_000, 75);
    let viral = summary("viral", 4_000, 75);
    let dormant = summary("dormant_but_reachable", 4_000, 75);

    let one_and_done = |s: &Summary| s.one_and_done.unwrap();
    assert!((0.2..0.45).contains(&one_and_done(&healthy)), "{healthy:?}");
    assert!((0.7..0.9).contains(&one_and_done(&leaky)), "{leaky:?}");
    assert!(healthy.day30.unwrap() > 0.08, "{healthy:?}");
    assert!(leaky.day30.unwrap() < 0.02, "{leaky:?}");
    assert!(viral.shared_share > 0.5, "{viral:?}");
    assert!(viral.day30.unwrap() > 0.06, "{viral:?}");
    assert!(healthy.shared_share < 0.2, "{healthy:?}");
    assert!(dormant.dormant.unwrap() > 0.7, "{dormant:?}");
    assert!(
        dormant.dormant_with_credit.unwrap() > 3.0 * healthy.dormant_with_credit.unwrap(),
        "{dormant:?}"
    );
    assert!(dormant.dormant_with_credit.unwrap() > 0.2, "{dormant:?}");
    assert!(dormant.message_opens > healthy.message_opens, "{dormant:?}");
}

#[test]
fn a_bad_config_is_refused() {
    let error = Simulation::new(
        Scenario::default(),
        config(1, 10, 10, date(9999, 12, 30), "UTC"),
    )
    .unwrap_err();
    assert!(error.to_string().contains("config"), "{error}");
    let mut scenario = Scenario::default();
    scenario.share.inherit = 2.0;
    let error = Simulation::new(scenario, config(1, 10, 10, date(2026, 1, 1), "UTC")).unwrap_err();
    assert!(error.to_string().contains("share.inherit"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_small_run_is_well_formed(
        seed in any::<u64>(),
        users in 0u32..400,
        days in 1u32..12,
        scenario in 0usize..5,
        zone in prop::sample::select(vec!["Asia/Shanghai", "America/Los_Angeles", "Europe/London", "Pacific/Chatham"]),
        offset in 0i64..400,
    ) {
        let start = date(2026, 1, 1).checked_add(jiff::Span::new().days(offset)).unwrap();
        let name = Scenario::names()[scenario];
        let config = config(seed, users, days, start, zone);
        let tz = config.timezone.clone();
        let (generated, sim) = run(Scenario::named(name).unwrap(), config);
        prop_assert_eq!(generated.len(), days as usize);
        assert_days_well_formed(&generated, &tz, start);
        for event in generated.iter().flat_map(|d| &d.events) {
            prop_assert!(event.user < sim.user_count());
        }
    }
}
