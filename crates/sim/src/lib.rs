//! A deterministic population simulator for a WeChat mini-program.
//!
//! A [`Scenario`] (read from TOML) describes how users arrive, how engaged they
//! are and how that fades, when they buy, subscribe, share and answer recall
//! messages, and whether fraud rings farm referral rewards. A [`Simulation`]
//! plays it for [`SimConfig::users`] users over [`SimConfig::days`] local days
//! in the app's time zone and hands back one day of [`SimEvent`]s at a time,
//! ready to be written as huiliu import lines or ingested straight into a store.
//!
//! The same scenario, configuration and seed always give the same events: the
//! random generator and every sampling routine are part of this crate.
//! `docs/simulator.md` describes the model and every parameter.
//!
//! ```
//! use huiliu_sim::{Scenario, SimConfig, Simulation};
//!
//! let config = SimConfig {
//!     seed: 7,
//!     users: 200,
//!     days: 14,
//!     start: jiff::civil::date(2026, 3, 2),
//!     timezone: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
//! };
//! let mut sim = Simulation::new(Scenario::named("healthy").unwrap(), config.clone()).unwrap();
//! let mut lines = String::new();
//! while let Some(day) = sim.next_day() {
//!     day.write_jsonl(&config.timezone, &mut lines);
//! }
//! assert!(lines.lines().count() > 200);
//! ```

mod clock;
mod event;
mod measure;
mod rng;
mod scenario;
mod sim;

pub use event::{
    user_id, DayOfEvents, EventKind, SimEvent, Source, Template, EVENT_NAMES, SCENE_CHAT_CARD,
    SCENE_DISCOVER, SCENE_GROUP_CARD, SCENE_MOMENTS_AD, SCENE_RECENT, SCENE_SCAN_CODE,
    SCENE_SUBSCRIPTION_MESSAGE,
};
pub use measure::{BySource, Measure, Summary};
pub use scenario::{
    Arrivals, Fraud, Recall, Rhythm, Scenario, Session, Share, SourceParams, Subscribe,
};
pub use sim::{SimConfig, Simulation, UserTruth, MAX_DAYS};

/// Why a scenario or a simulation could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// No shipped scenario has this name.
    #[error("unknown scenario {name:?}; shipped scenarios are: {known}")]
    UnknownScenario { name: String, known: String },
    /// The scenario file is not valid TOML or has an unknown or mistyped key.
    #[error("scenario file: {0}")]
    Toml(String),
    /// A parameter is out of its range.
    #[error("scenario parameter `{key}` {message}")]
    Invalid { key: String, message: String },
    /// The simulation configuration cannot be used.
    #[error("simulation config: {0}")]
    Config(String),
}
