//! Scenario files: every parameter of the model, read from TOML.
//!
//! Each table and key has a default, so a scenario file only states what makes
//! it different. Unknown keys are errors: a misspelt parameter silently falling
//! back to its default would make a scenario quietly mean something else.

use crate::SimError;
use serde::Deserialize;

/// Shipped scenarios, in the order [`Scenario::names`] lists them.
const SHIPPED: &[(&str, &str)] = &[
    ("healthy", include_str!("../scenarios/healthy.toml")),
    (
        "leaky_bucket",
        include_str!("../scenarios/leaky_bucket.toml"),
    ),
    ("viral", include_str!("../scenarios/viral.toml")),
    (
        "dormant_but_reachable",
        include_str!("../scenarios/dormant_but_reachable.toml"),
    ),
    (
        "referral_fraud",
        include_str!("../scenarios/referral_fraud.toml"),
    ),
];

const NAMES: &[&str] = &[
    "healthy",
    "leaky_bucket",
    "viral",
    "dormant_but_reachable",
    "referral_fraud",
];

/// All parameters of one simulated mini-program population.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Short name of the scenario (informational).
    pub name: String,
    /// One-paragraph description of what the scenario shows (informational).
    pub description: String,
    /// How many users arrive each day and through which channel.
    pub arrivals: Arrivals,
    /// Weekly and daily rhythms of activity, in the app's time zone.
    pub rhythm: Rhythm,
    /// Engagement of users who found the app themselves.
    pub organic: SourceParams,
    /// Engagement of users bought through paid advertising.
    pub paid: SourceParams,
    /// Engagement of users who arrived through another user's share.
    pub shared: SourceParams,
    /// What happens inside a session: browsing, carts, orders, sign-ins.
    pub session: Session,
    /// When subscription prompts are shown and how often they are accepted.
    pub subscribe: Subscribe,
    /// Recall messages the company sends to dormant users holding a credit.
    pub recall: Recall,
    /// How often users share and how many newcomers a share brings.
    pub share: Share,
    /// Optional fraud rings farming referral rewards.
    pub fraud: Fraud,
}

/// Daily arrivals of new users from outside (organic and paid).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Arrivals {
    /// Share of outside arrivals that come from paid advertising (the rest are organic).
    pub paid_share: f64,
    /// Daily arrivals on the last day relative to the first: 1 is flat, 2 doubles
    /// over the period, 0.5 halves; the curve between is exponential.
    pub end_to_start: f64,
}

/// Activity rhythms, in the app's time zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rhythm {
    /// Activity and arrival multipliers for Monday … Sunday.
    pub weekday: [f64; 7],
    /// Relative weight of each local hour 0 … 23 for session start times.
    pub hourly: [f64; 24],
}

/// Latent engagement of users from one arrival source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceParams {
    /// Share of these users who never come back on their own after their first day.
    pub one_and_done: f64,
    /// Mean of the engagement λ: the daily chance of an active day right after arrival.
    pub engagement_mean: f64,
    /// Gamma shape of λ across users: below 1 a few users are very engaged and
    /// most barely; large values make everyone alike.
    pub engagement_shape: f64,
    /// Median number of days for a user's engagement to halve.
    pub half_life_days: f64,
    /// Log-normal spread σ of the half-life across users; a wide spread makes a
    /// loyal core next to fast leavers.
    pub half_life_spread: f64,
    /// Fraction of λ that never decays: the rate of spontaneous comebacks of a dormant user.
    pub dormant_floor: f64,
}

/// What users do inside a session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Session {
    /// Extra sessions on an active day for a fully engaged user (Poisson mean,
    /// scaled by the user's current engagement).
    pub extra_sessions: f64,
    /// Mean number of `view_item` events per session (Poisson).
    pub views_mean: f64,
    /// Chance that a viewed item is added to the cart.
    pub cart_rate: f64,
    /// Chance that a session with something in the cart ends with a paid order,
    /// for a user of average purchase propensity.
    pub checkout_rate: f64,
    /// Log-normal spread σ of the purchase propensity across users (mean 1).
    pub buyer_spread: f64,
    /// Median order amount in fen.
    pub amount_median_fen: i64,
    /// Log-normal spread σ of order amounts.
    pub amount_spread: f64,
    /// Number of distinct items; popularity is skewed toward low item numbers.
    pub items: u32,
    /// Chance that an active day includes a `sign_in` (daily check-in).
    pub sign_in_rate: f64,
    /// Chance that a new user registers (binds a phone) on the first day.
    pub register_rate: f64,
    /// Mean seconds between two events of one session.
    pub event_gap_seconds: f64,
    /// Chance that a user's IP address changes on an active day (mobile networks).
    pub ip_change_rate: f64,
}

/// Subscription prompts (`wx.requestSubscribeMessage`) and their acceptance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Subscribe {
    /// Chance of a prompt on the first launch (a home-page pop-up).
    pub on_first_launch: f64,
    /// Chance of accepting the first-launch prompt.
    pub accept_first_launch: f64,
    /// Chance of a prompt right after a paid order (order status notice).
    pub after_order: f64,
    /// Chance of accepting the after-order prompt.
    pub accept_after_order: f64,
    /// Chance of a prompt right after a sign-in (check-in reminder).
    pub after_sign_in: f64,
    /// Chance of accepting the after-sign-in prompt.
    pub accept_after_sign_in: f64,
    /// Log-normal spread σ of acceptance across users (mean 1; chances are capped at 1).
    pub propensity_spread: f64,
}

/// Recall messages sent by the company and the users' response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recall {
    /// Daily chance that an eligible user (inactive long enough, holding a
    /// credit) is sent one message; each send consumes one credit. 0 disables recall.
    pub send_rate: f64,
    /// Days without activity before a user is eligible.
    pub inactive_days_min: u32,
    /// Days without activity after which the company gives up on the user.
    pub inactive_days_max: u32,
    /// Local hour at which the day's messages go out.
    pub send_hour: u8,
    /// Chance that a received message is opened (bringing the user back).
    pub open_rate: f64,
    /// Chance of opening for users who never came back on their own.
    pub open_rate_one_and_done: f64,
    /// Mean minutes between the send and the open.
    pub open_delay_minutes: f64,
    /// Engagement right after an opened message, as a multiple of the user's λ.
    pub boost: f64,
}

/// Sharing and the newcomers shares bring.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Share {
    /// Chance that a session includes a share, for a user of average propensity.
    pub per_session: f64,
    /// Log-normal spread σ of the share propensity across users (mean 1).
    pub propensity_spread: f64,
    /// Mean number of new users one share brings (Poisson).
    pub newcomers_per_share: f64,
    /// Share of shares sent to group chats (scene 1008) rather than one friend (1007).
    pub group_share: f64,
    /// Weight of the inviter's own λ in an invitee's λ (0: invitees are drawn
    /// like any shared user; 1: they copy their inviter).
    pub inherit: f64,
    /// Mean minutes between a share and the newcomer opening the card.
    pub delay_minutes: f64,
}

/// Fraud rings: many accounts on a few devices and IPs inviting each other in a
/// burst to farm referral rewards, inactive after their first day.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fraud {
    /// Number of rings over the whole period (on top of `users`); 0 disables fraud.
    pub rings: u32,
    /// Accounts per ring, the ring leader included.
    pub ring_size: u32,
    /// Distinct device ids shared by one ring's accounts.
    pub devices_per_ring: u32,
    /// Distinct IP addresses shared by one ring's accounts.
    pub ips_per_ring: u32,
    /// Minutes over which one ring's accounts arrive.
    pub burst_minutes: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".to_string(),
            description: String::new(),
            arrivals: Arrivals::default(),
            rhythm: Rhythm::default(),
            organic: SourceParams::default(),
            paid: SourceParams {
                one_and_done: 0.45,
                engagement_mean: 0.25,
                ..SourceParams::default()
            },
            shared: SourceParams {
                one_and_done: 0.35,
                engagement_mean: 0.3,
                ..SourceParams::default()
            },
            session: Session::default(),
            subscribe: Subscribe::default(),
            recall: Recall::default(),
            share: Share::default(),
            fraud: Fraud::default(),
        }
    }
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            paid_share: 0.3,
            end_to_start: 1.0,
        }
    }
}

impl Default for Rhythm {
    fn default() -> Self {
        Rhythm {
            weekday: [0.95, 0.93, 0.95, 0.97, 1.02, 1.12, 1.06],
            hourly: [
                0.6, 0.3, 0.15, 0.1, 0.1, 0.15, 0.4, 1.0, 1.6, 1.5, 1.4, 1.7, 2.6, 2.4, 1.5, 1.3,
                1.3, 1.5, 1.8, 2.2, 2.8, 3.0, 2.5, 1.4,
            ],
        }
    }
}

impl Default for SourceParams {
    fn default() -> Self {
        SourceParams {
            one_and_done: 0.25,
            engagement_mean: 0.35,
            engagement_shape: 0.8,
            half_life_days: 14.0,
            half_life_spread: 1.2,
            dormant_floor: 0.02,
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            extra_sessions: 0.8,
            views_mean: 3.0,
            cart_rate: 0.12,
            checkout_rate: 0.45,
            buyer_spread: 1.0,
            amount_median_fen: 3900,
            amount_spread: 0.8,
            items: 500,
            sign_in_rate: 0.3,
            register_rate: 0.4,
            event_gap_seconds: 25.0,
            ip_change_rate: 0.2,
        }
    }
}

impl Default for Subscribe {
    fn default() -> Self {
        Subscribe {
            on_first_launch: 0.5,
            accept_first_launch: 0.12,
            after_order: 0.8,
            accept_after_order: 0.55,
            after_sign_in: 0.3,
            accept_after_sign_in: 0.35,
            propensity_spread: 0.7,
        }
    }
}

impl Default for Recall {
    fn default() -> Self {
        Recall {
            send_rate: 0.1,
            inactive_days_min: 7,
            inactive_days_max: 60,
            send_hour: 10,
            open_rate: 0.12,
            open_rate_one_and_done: 0.02,
            open_delay_minutes: 90.0,
            boost: 1.0,
        }
    }
}

impl Default for Share {
    fn default() -> Self {
        Share {
            per_session: 0.02,
            propensity_spread: 1.2,
            newcomers_per_share: 0.25,
            group_share: 0.3,
            inherit: 0.3,
            delay_minutes: 45.0,
        }
    }
}

impl Default for Fraud {
    fn default() -> Self {
        Fraud {
            rings: 0,
            ring_size: 20,
            devices_per_ring: 3,
            ips_per_ring: 2,
            burst_minutes: 60.0,
        }
    }
}

impl Scenario {
    /// A shipped scenario by name (see [`Scenario::names`]).
    pub fn named(name: &str) -> Result<Scenario, SimError> {
        let text = SHIPPED
            .iter()
            .find(|(shipped, _)| *shipped == name)
            .map(|(_, text)| *text)
            .ok_or_else(|| SimError::UnknownScenario {
                name: name.to_string(),
                known: NAMES.join(", "),
            })?;
        Scenario::from_toml_str(text)
    }

    /// Names of the shipped scenarios.
    pub fn names() -> &'static [&'static str] {
        NAMES
    }

    /// Parses and checks a scenario file. Errors name the offending key.
    pub fn from_toml_str(text: &str) -> Result<Scenario, SimError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|error| SimError::Toml(error.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks every parameter's range; [`crate::Simulation::new`] calls it too,
    /// for scenarios built in code.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut check = Checker::default();
        let a = &self.arrivals;
        check.probability("arrivals.paid_share", a.paid_share);
        check.positive("arrivals.end_to_start", a.end_to_start);

        for (i, w) in self.rhythm.weekday.iter().enumerate() {
            check.non_negative_at("rhythm.weekday", i, *w);
        }
        for (i, w) in self.rhythm.hourly.iter().enumerate() {
            check.non_negative_at("rhythm.hourly", i, *w);
        }
        if self.rhythm.weekday.iter().sum::<f64>() <= 0.0 {
            check.fail("rhythm.weekday", "needs at least one positive day");
        }
        if self.rhythm.hourly.iter().sum::<f64>() <= 0.0 {
            check.fail("rhythm.hourly", "needs at least one positive hour");
        }

        for (table, source) in [
            ("organic", &self.organic),
            ("paid", &self.paid),
            ("shared", &self.shared),
        ] {
            check.probability(&format!("{table}.one_and_done"), source.one_and_done);
            check.non_negative(&format!("{table}.engagement_mean"), source.engagement_mean);
            check.positive(
                &format!("{table}.engagement_shape"),
                source.engagement_shape,
            );
            check.positive(&format!("{table}.half_life_days"), source.half_life_days);
            check.non_negative(
                &format!("{table}.half_life_spread"),
                source.half_life_spread,
            );
            check.probability(&format!("{table}.dormant_floor"), source.dormant_floor);
        }

        let s = &self.session;
        check.non_negative("session.extra_sessions", s.extra_sessions);
        check.non_negative("session.views_mean", s.views_mean);
        check.probability("session.cart_rate", s.cart_rate);
        check.probability("session.checkout_rate", s.checkout_rate);
        check.non_negative("session.buyer_spread", s.buyer_spread);
        if s.amount_median_fen < 1 {
            check.fail("session.amount_median_fen", "must be at least 1 fen");
        }
        check.non_negative("session.amount_spread", s.amount_spread);
        if s.items == 0 {
            check.fail("session.items", "must be at least 1");
        }
        check.probability("session.sign_in_rate", s.sign_in_rate);
        check.probability("session.register_rate", s.register_rate);
        check.non_negative("session.event_gap_seconds", s.event_gap_seconds);
        check.probability("session.ip_change_rate", s.ip_change_rate);

        let p = &self.subscribe;
        check.probability("subscribe.on_first_launch", p.on_first_launch);
        check.probability("subscribe.accept_first_launch", p.accept_first_launch);
        check.probability("subscribe.after_order", p.after_order);
        check.probability("subscribe.accept_after_order", p.accept_after_order);
        check.probability("subscribe.after_sign_in", p.after_sign_in);
        check.probability("subscribe.accept_after_sign_in", p.accept_after_sign_in);
        check.non_negative("subscribe.propensity_spread", p.propensity_spread);

        let r = &self.recall;
        check.probability("recall.send_rate", r.send_rate);
        if r.inactive_days_min == 0 {
            check.fail("recall.inactive_days_min", "must be at least 1 day");
        }
        if r.inactive_days_max < r.inactive_days_min {
            check.fail(
                "recall.inactive_days_max",
                "must not be below recall.inactive_days_min",
            );
        }
        if r.send_hour > 23 {
            check.fail("recall.send_hour", "must be a local hour 0 to 23");
        }
        check.probability("recall.open_rate", r.open_rate);
        check.probability("recall.open_rate_one_and_done", r.open_rate_one_and_done);
        check.non_negative("recall.open_delay_minutes", r.open_delay_minutes);
        check.non_negative("recall.boost", r.boost);

        let h = &self.share;
        check.probability("share.per_session", h.per_session);
        check.non_negative("share.propensity_spread", h.propensity_spread);
        check.non_negative("share.newcomers_per_share", h.newcomers_per_share);
        check.probability("share.group_share", h.group_share);
        check.probability("share.inherit", h.inherit);
        check.non_negative("share.delay_minutes", h.delay_minutes);

        let f = &self.fraud;
        if f.rings > 0 {
            if f.ring_size < 2 {
                check.fail("fraud.ring_size", "a ring needs at least 2 accounts");
            }
            if f.devices_per_ring == 0 {
                check.fail("fraud.devices_per_ring", "must be at least 1");
            }
            if f.ips_per_ring == 0 {
                check.fail("fraud.ips_per_ring", "must be at least 1");
            }
        }
        if f.ring_size > 10_000 {
            check.fail("fraud.ring_size", "must be at most 10000");
        }
        check.non_negative("fraud.burst_minutes", f.burst_minutes);
        if f.burst_minutes > 12.0 * 60.0 {
            check.fail("fraud.burst_minutes", "must be at most 720 (half a day)");
        }
        check.finish()
    }
}

/// Collects the first range error, naming its key.
#[derive(Default)]
struct Checker {
    error: Option<SimError>,
}

impl Checker {
    fn fail(&mut self, key: &str, message: &str) {
        if self.error.is_none() {
            self.error = Some(SimError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            });
        }
    }

    fn probability(&mut self, key: &str, value: f64) {
        if !(0.0..=1.0).contains(&value) {
            self.fail(
                key,
                &format!("must be a probability from 0 to 1, got {value}"),
            );
        }
    }

    fn non_negative(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(key, &format!("must be a finite number ≥ 0, got {value}"));
        }
    }

    fn non_negative_at(&mut self, key: &str, index: usize, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(
                &format!("{key}[{index}]"),
                &format!("must be a finite number ≥ 0, got {value}"),
            );
        }
    }

    fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(key, &format!("must be a finite number > 0, got {value}"));
        }
    }

    fn finish(self) -> Result<(), SimError> {
        self.error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_parses_and_is_listed() {
        assert_eq!(SHIPPED.len(), NAMES.len());
        for name in Scenario::names() {
            let scenario = Scenario::named(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scenario.name, *name);
            assert!(
                !scenario.description.is_empty(),
                "{name} has no description"
            );
        }
    }

    #[test]
    fn an_empty_file_is_the_default_scenario() {
        assert_eq!(Scenario::from_toml_str("").unwrap(), Scenario::default());
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let error = Scenario::from_toml_str("[share]\nper_sesion = 0.1\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("per_sesion"), "{text}");
        let error = Scenario::from_toml_str("colour = 1\n").unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn an_out_of_range_value_is_named_in_the_error() {
        let error = Scenario::from_toml_str("[recall]\nopen_rate = 1.5\n").unwrap_err();
        assert!(
            matches!(&error, SimError::Invalid { key, .. } if key == "recall.open_rate"),
            "{error}"
        );
        let error = Scenario::from_toml_str("[rhythm]\nhourly = [1.0]\n").unwrap_err();
        assert!(error.to_string().contains("hourly"), "{error}");
        let error = Scenario::from_toml_str("[paid]\nhalf_life_days = 0\n").unwrap_err();
        assert!(error.to_string().contains("paid.half_life_days"), "{error}");
    }

    #[test]
    fn unknown_scenario_lists_the_known_ones() {
        let error = Scenario::named("nope").unwrap_err().to_string();
        assert!(
            error.contains("healthy") && error.contains("nope"),
            "{error}"
        );
    }
}
