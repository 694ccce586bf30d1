//! The population model, stepped one local day at a time.

use crate::clock::DayClock;
use crate::event::{
    DayOfEvents, EventKind, SimEvent, Source, Template, SCENE_CHAT_CARD, SCENE_DISCOVER,
    SCENE_GROUP_CARD, SCENE_MOMENTS_AD, SCENE_RECENT, SCENE_SCAN_CODE, SCENE_SUBSCRIPTION_MESSAGE,
};
use crate::rng::Rng;
use crate::scenario::{Scenario, SourceParams};
use crate::SimError;
use jiff::civil::Date;
use jiff::tz::TimeZone;

const SECOND: f64 = 1_000_000.0;
const MINUTE: f64 = 60.0 * SECOND;

/// Most days one simulation may cover (days are kept as `u16` per user).
pub const MAX_DAYS: u32 = 36_600;

/// What to simulate: how many users over which local days, in which zone.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of the random stream: the same seed and scenario give the same events.
    pub seed: u64,
    /// Users arriving over the whole period, shared arrivals included (fraud
    /// rings come on top). Exact unless the scenario's fraud rings add more.
    pub users: u32,
    /// Number of local days to simulate.
    pub days: u32,
    /// The first local day.
    pub start: Date,
    /// The app's time zone: day boundaries and rhythms follow it.
    pub timezone: TimeZone,
}

const ONE_AND_DONE: u8 = 1;
const FRAUD: u8 = 2;

/// Per-user state: 44 bytes, so a million users take about 44 MB.
#[derive(Debug, Clone)]
struct User {
    /// Latent engagement λ: daily chance of activity when fresh.
    lambda: f32,
    /// Current engagement: decays from λ toward the dormant floor.
    engagement: f32,
    /// Per-day factor on the part of engagement above the floor.
    decay: f32,
    /// Purchase propensity (mean 1 across users).
    buyer: f32,
    /// Share propensity (mean 1 across users).
    sharer: f32,
    /// Subscription acceptance propensity (mean 1 across users).
    subscriber: f32,
    device: u32,
    ip: u32,
    arrival: u16,
    last_active: u16,
    /// One-time subscription credits held, per [`Template`].
    credits: [u8; 3],
    source: Source,
    flags: u8,
}

/// The ground truth about one simulated user, for tests and reports.
#[derive(Debug, Clone, PartialEq)]
pub struct UserTruth {
    /// How the user arrived (fraud accounts look like organic or shared users).
    pub source: Source,
    /// Index of the local day the user arrived, 0 = `SimConfig::start`.
    pub arrival_day: u32,
    /// The user never comes back on their own after the first day.
    pub one_and_done: bool,
    /// The account belongs to a fraud ring.
    pub fraud: bool,
    /// Latent engagement λ.
    pub lambda: f64,
    /// Subscription credits currently held, per [`Template::ALL`].
    pub credits: [u8; 3],
}

/// A newcomer brought by a share.
#[derive(Debug, Clone, Copy)]
struct Invite {
    inviter: u32,
    scene: u16,
    /// Arrival time, or `None` when the card is opened on a later day.
    time: Option<i64>,
}

/// Who made a new arrival come.
#[derive(Debug, Clone, Copy)]
enum Referrer {
    None,
    User(u32),
    /// An earlier member of the same fraud ring, by arrival index of today.
    RingMember(u32),
}

#[derive(Debug, Clone, Copy)]
struct Arrival {
    time: i64,
    source: Source,
    scene: u16,
    referrer: Referrer,
    /// Fraud ring this account belongs to (index into today's rings).
    ring: Option<u32>,
}

#[derive(Debug, Clone)]
struct Ring {
    devices: Vec<u32>,
    ips: Vec<u32>,
}

/// A running simulation; call [`Simulation::next_day`] until it returns `None`.
pub struct Simulation {
    scenario: Scenario,
    config: SimConfig,
    rng: Rng,
    users: Vec<User>,
    day: u32,
    date: Date,
    /// Outside-plus-shared arrivals per day; sums to `config.users`.
    budget: Vec<u32>,
    /// Day index of each fraud ring, sorted.
    ring_days: Vec<u32>,
    invites_today: Vec<Invite>,
    invites_tomorrow: Vec<Invite>,
    /// Events of the previous day, to size the next allocation.
    last_len: usize,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("config", &self.config)
            .field("day", &self.day)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// Daily arrival budgets: an exponential trend times the weekday rhythm,
/// rounded by carrying so they add up to exactly `users`.
fn arrival_budget(scenario: &Scenario, config: &SimConfig) -> Result<Vec<u32>, SimError> {
    let days = config.days as usize;
    if days == 0 {
        return Ok(Vec::new());
    }
    let growth = scenario.arrivals.end_to_start.ln();
    let mut weights = Vec::with_capacity(days);
    let mut date = config.start;
    for d in 0..days {
        let position = if days > 1 {
            d as f64 / (days - 1) as f64
        } else {
            0.0
        };
        let weekday = date.weekday().to_monday_zero_offset() as usize;
        weights.push((growth * position).exp() * scenario.rhythm.weekday[weekday]);
        date = date
            .tomorrow()
            .map_err(|e| SimError::Config(format!("the period runs past {date}: {e}")))?;
    }
    let mut total: f64 = weights.iter().sum();
    if total <= 0.0 {
        // A short period on days the rhythm leaves empty: spread arrivals evenly.
        weights.iter_mut().for_each(|w| *w = 1.0);
        total = days as f64;
    }
    let mut cumulative = 0.0;
    let mut handed_out = 0u64;
    Ok(weights
        .iter()
        .map(|w| {
            cumulative += w;
            let due = ((cumulative / total) * config.users as f64).round() as u64;
            let due = due.min(config.users as u64);
            let today = due.saturating_sub(handed_out);
            handed_out = due.max(handed_out);
            today as u32
        })
        .collect())
}

/// A mobile-carrier style address in 100.64.0.0/10 (carrier-grade NAT), where
/// unrelated users do share addresses now and then, as they do in life.
fn random_ip(rng: &mut Rng) -> u32 {
    u32::from_be_bytes([100, 64, 0, 0]) | (rng.next_u32() >> 10)
}

impl Simulation {
    /// Checks the scenario and the configuration and prepares day one.
    pub fn new(scenario: Scenario, config: SimConfig) -> Result<Simulation, SimError> {
        scenario.validate()?;
        if config.days > MAX_DAYS {
            return Err(SimError::Config(format!(
                "days must be at most {MAX_DAYS}, got {}",
                config.days
            )));
        }
        let budget = arrival_budget(&scenario, &config)?;
        if config.days > 0 {
            // The last day is the one most likely to fall off jiff's calendar.
            let last = config
                .start
                .checked_add(jiff::Span::new().days(i64::from(config.days - 1)))
                .map_err(|e| {
                    SimError::Config(format!("the period does not fit the calendar: {e}"))
                })?;
            DayClock::new(config.start, &config.timezone, &scenario.rhythm.hourly)?;
            DayClock::new(last, &config.timezone, &scenario.rhythm.hourly)?;
        }
        let mut setup = Rng::new(config.seed, 1);
        let mut ring_days: Vec<u32> = (0..scenario.fraud.rings)
            .filter(|_| config.days > 0)
            .map(|_| setup.below(config.days as u64) as u32)
            .collect();
        ring_days.sort_unstable();
        let expected = config.users as usize
            + scenario.fraud.rings as usize * scenario.fraud.ring_size as usize;
        Ok(Simulation {
            rng: Rng::new(config.seed, 0),
            users: Vec::with_capacity(expected.min(1 << 24)),
            day: 0,
            date: config.start,
            budget,
            ring_days,
            invites_today: Vec::new(),
            invites_tomorrow: Vec::new(),
            last_len: 0,
            scenario,
            config,
        })
    }

    /// The scenario being simulated.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The configuration being simulated.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Users who have arrived so far; user numbers are `0..user_count()`.
    pub fn user_count(&self) -> u32 {
        self.users.len() as u32
    }

    /// Days generated so far.
    pub fn days_done(&self) -> u32 {
        self.day
    }

    /// What the simulator knows about a user that the events only hint at.
    pub fn user_truth(&self, user: u32) -> Option<UserTruth> {
        let u = self.users.get(user as usize)?;
        Some(UserTruth {
            source: u.source,
            arrival_day: u32::from(u.arrival),
            one_and_done: u.flags & ONE_AND_DONE != 0,
            fraud: u.flags & FRAUD != 0,
            lambda: f64::from(u.lambda),
            credits: u.credits,
        })
    }

    /// Generates one local day at a time; events within the returned Vec are
    /// sorted by time. `None` after `days` days.
    pub fn next_day(&mut self) -> Option<DayOfEvents> {
        if self.day >= self.config.days {
            return None;
        }
        let date = self.date;
        let clock = DayClock::new(date, &self.config.timezone, &self.scenario.rhythm.hourly)
            .expect("every day of the period was checked to exist");
        let weekday = date.weekday().to_monday_zero_offset() as usize;
        let mut events = Vec::with_capacity(self.last_len + self.last_len / 8 + 64);

        // Cards shared yesterday but opened today get a time in today's rhythm.
        self.invites_today.clear();
        std::mem::swap(&mut self.invites_today, &mut self.invites_tomorrow);
        for invite in &mut self.invites_today {
            invite.time = Some(clock.sample(&mut self.rng));
        }

        let day = self.day as u16;
        let existing = self.users.len();
        {
            let mut gen = Day {
                scenario: &self.scenario,
                clock: &clock,
                rng: &mut self.rng,
                events: &mut events,
                invites_today: &mut self.invites_today,
                invites_tomorrow: &mut self.invites_tomorrow,
                day,
                weekday: self.scenario.rhythm.weekday[weekday],
            };
            for (index, user) in self.users.iter_mut().enumerate() {
                gen.existing_user(index as u32, user);
            }
        }

        let arrivals = self.plan_arrivals(&clock);
        let mut gen = Day {
            scenario: &self.scenario,
            clock: &clock,
            rng: &mut self.rng,
            events: &mut events,
            invites_today: &mut self.invites_today,
            invites_tomorrow: &mut self.invites_tomorrow,
            day,
            weekday: self.scenario.rhythm.weekday[weekday],
        };
        gen.arrivals(&arrivals, existing as u32, &mut self.users);

        // Generation order breaks ties, so the sort is deterministic.
        events.sort_unstable_by_key(|e: &SimEvent| (e.time_us, e.seq));
        for (seq, event) in events.iter_mut().enumerate() {
            event.seq = seq as u32;
        }
        self.last_len = events.len();
        self.day += 1;
        if self.day < self.config.days {
            self.date = date.tomorrow().expect("checked when the budget was built");
        }
        Some(DayOfEvents { date, events })
    }

    /// Today's newcomers: shared arrivals up to the day's budget, outsiders
    /// for the rest, and any fraud rings due today, in order of arrival.
    fn plan_arrivals(&mut self, clock: &DayClock) -> (Vec<Arrival>, Vec<Ring>) {
        let budget = self.budget[self.day as usize] as usize;
        let rng = &mut self.rng;
        let invites = &mut self.invites_today;
        if invites.len() > budget {
            // More cards opened than the day has room for: a fair sample arrives.
            for i in 0..budget {
                let j = i + rng.below((invites.len() - i) as u64) as usize;
                invites.swap(i, j);
            }
            invites.truncate(budget);
        }
        let mut arrivals = Vec::with_capacity(budget);
        for invite in invites.iter() {
            arrivals.push(Arrival {
                time: invite.time.unwrap_or(clock.start),
                source: Source::Shared,
                scene: invite.scene,
                referrer: Referrer::User(invite.inviter),
                ring: None,
            });
        }
        for _ in invites.len()..budget {
            let paid = rng.chance(self.scenario.arrivals.paid_share);
            let (source, scene) = if paid {
                (Source::Paid, SCENE_MOMENTS_AD)
            } else if rng.chance(0.25) {
                (Source::Organic, SCENE_SCAN_CODE)
            } else {
                (Source::Organic, SCENE_DISCOVER)
            };
            arrivals.push(Arrival {
                time: clock.sample(rng),
                source,
                scene,
                referrer: Referrer::None,
                ring: None,
            });
        }

        let mut rings = Vec::new();
        let fraud = &self.scenario.fraud;
        let due = self.ring_days.iter().filter(|d| **d == self.day).count();
        for _ in 0..due {
            let ring = rings.len() as u32;
            rings.push(Ring {
                devices: (0..fraud.devices_per_ring)
                    .map(|_| rng.next_u32())
                    .collect(),
                ips: (0..fraud.ips_per_ring).map(|_| random_ip(rng)).collect(),
            });
            let size = fraud.ring_size as usize;
            let burst = (fraud.burst_minutes * MINUTE) as i64;
            let latest_start = (clock.end - burst - 1).max(clock.start);
            let leader_time = clock.sample(rng).min(latest_start);
            let leader = arrivals.len() as u32;
            arrivals.push(Arrival {
                time: leader_time,
                source: Source::Organic,
                scene: SCENE_DISCOVER,
                referrer: Referrer::None,
                ring: Some(ring),
            });
            let step = burst / size as i64;
            let mut time = leader_time;
            for member in 1..size as u32 {
                time += step / 2 + rng.below((step as u64).max(1)) as i64 + 1;
                // Members invite each other: the leader often, any earlier member otherwise.
                let inviter = if rng.chance(0.4) {
                    leader
                } else {
                    leader + rng.below(u64::from(member)) as u32
                };
                arrivals.push(Arrival {
                    time: clock.clamp(time),
                    source: Source::Shared,
                    scene: SCENE_CHAT_CARD,
                    referrer: Referrer::RingMember(inviter),
                    ring: Some(ring),
                });
            }
        }
        (arrivals, rings)
    }
}

/// The generator for one day: borrowed pieces of the simulation.
struct Day<'a> {
    scenario: &'a Scenario,
    clock: &'a DayClock,
    rng: &'a mut Rng,
    events: &'a mut Vec<SimEvent>,
    invites_today: &'a mut Vec<Invite>,
    invites_tomorrow: &'a mut Vec<Invite>,
    day: u16,
    weekday: f64,
}

/// How a session starts.
#[derive(Clone, Copy)]
struct Start {
    time: i64,
    scene: u16,
    first: Option<Source>,
    message: Option<Template>,
    inviter: Option<u32>,
    register: bool,
    sign_in: bool,
    /// Shares from this session are opened today (otherwise tomorrow).
    invites_same_day: bool,
}

impl<'a> Day<'a> {
    fn push(&mut self, user: u32, time: i64, kind: EventKind) {
        let seq = self.events.len() as u32;
        self.events.push(SimEvent {
            user,
            time_us: time,
            kind,
            seq,
        });
    }

    fn source(&self, source: Source) -> &'a SourceParams {
        let scenario = self.scenario;
        match source {
            Source::Organic => &scenario.organic,
            Source::Paid => &scenario.paid,
            Source::Shared => &scenario.shared,
        }
    }

    fn gap(&mut self) -> i64 {
        SECOND as i64
            + self
                .rng
                .exponential(self.scenario.session.event_gap_seconds * SECOND) as i64
    }

    fn return_scene(&mut self) -> u16 {
        if self.rng.chance(0.6) {
            SCENE_RECENT
        } else {
            SCENE_DISCOVER
        }
    }

    fn existing_user(&mut self, index: u32, user: &mut User) {
        if user.engagement > 0.0 {
            let floor = if user.flags & ONE_AND_DONE != 0 {
                0.0
            } else {
                user.lambda * self.source(user.source).dormant_floor as f32
            };
            user.engagement = floor + (user.engagement - floor) * user.decay;
        }

        let mut opened = None;
        let recall = &self.scenario.recall;
        if recall.send_rate > 0.0 && user.credits != [0; 3] {
            let idle = u32::from(self.day - user.last_active);
            if idle >= recall.inactive_days_min
                && idle <= recall.inactive_days_max
                && self.rng.chance(recall.send_rate)
            {
                // The company spends the template the user granted most often.
                let mut template = 0;
                for t in 1..3 {
                    if user.credits[t] > user.credits[template] {
                        template = t;
                    }
                }
                user.credits[template] -= 1;
                let open_rate = if user.flags & FRAUD != 0 {
                    0.0
                } else if user.flags & ONE_AND_DONE != 0 {
                    recall.open_rate_one_and_done
                } else {
                    recall.open_rate
                };
                if self.rng.chance(open_rate) {
                    let sent = self.clock.in_hour(usize::from(recall.send_hour), self.rng);
                    let delay = self.rng.exponential(recall.open_delay_minutes * MINUTE) as i64;
                    let time = if sent + delay < self.clock.end {
                        sent + delay
                    } else {
                        sent + self.rng.below((self.clock.end - sent).max(1) as u64) as i64
                    };
                    opened = Some((time, Template::ALL[template]));
                    let boosted = user.lambda * recall.boost as f32;
                    user.engagement = user.engagement.max(boosted);
                }
            }
        }

        let p = f64::from(user.engagement) * self.weekday;
        let active = p > 0.0 && self.rng.chance(p);
        if !active && opened.is_none() {
            return;
        }
        if self.rng.chance(self.scenario.session.ip_change_rate) {
            user.ip = random_ip(self.rng);
        }
        let mut sign_in = self.rng.chance(self.scenario.session.sign_in_rate);
        if let Some((time, template)) = opened {
            self.session(
                index,
                user,
                Start {
                    time,
                    scene: SCENE_SUBSCRIPTION_MESSAGE,
                    first: None,
                    message: Some(template),
                    inviter: None,
                    register: false,
                    sign_in,
                    invites_same_day: true,
                },
            );
            sign_in = false;
        }
        if active {
            let intensity = f64::from(user.engagement.min(1.0));
            let sessions = 1 + self
                .rng
                .poisson(self.scenario.session.extra_sessions * intensity);
            for _ in 0..sessions {
                let time = self.clock.sample(self.rng);
                let scene = self.return_scene();
                self.session(
                    index,
                    user,
                    Start {
                        time,
                        scene,
                        first: None,
                        message: None,
                        inviter: None,
                        register: false,
                        sign_in,
                        invites_same_day: true,
                    },
                );
                sign_in = false;
            }
        }
        user.last_active = self.day;
    }

    /// One session: launch, then whatever the user does, all within the day.
    fn session(&mut self, index: u32, user: &mut User, start: Start) {
        let first_event = self.events.len();
        let mut t = start.time;
        self.push(
            index,
            t,
            EventKind::Launch {
                scene: start.scene,
                device: user.device,
                ip: user.ip,
                first: start.first,
            },
        );
        if let Some(template) = start.message {
            t += 1 + self.rng.below(2 * SECOND as u64) as i64;
            self.push(index, t, EventKind::MessageOpen { template });
        }
        if let Some(inviter) = start.inviter {
            t += 1 + self.rng.below(3 * SECOND as u64) as i64;
            self.push(index, t, EventKind::InviteAccepted { inviter });
        }
        let subscribe = &self.scenario.subscribe;
        if start.first.is_some() && self.rng.chance(subscribe.on_first_launch) {
            t += self.gap();
            let accepted = self.prompt(user, Template::PriceDrop, subscribe.accept_first_launch);
            self.push(
                index,
                t,
                EventKind::SubscribePrompt {
                    template: Template::PriceDrop,
                    accepted,
                },
            );
        }
        if start.register {
            t += self.gap();
            self.push(index, t, EventKind::Register);
        }
        if start.sign_in {
            t += self.gap();
            self.push(index, t, EventKind::SignIn);
            let subscribe = &self.scenario.subscribe;
            if self.rng.chance(subscribe.after_sign_in) {
                t += self.gap();
                let accepted = self.prompt(
                    user,
                    Template::CheckinReminder,
                    subscribe.accept_after_sign_in,
                );
                self.push(
                    index,
                    t,
                    EventKind::SubscribePrompt {
                        template: Template::CheckinReminder,
                        accepted,
                    },
                );
            }
        }

        let session = &self.scenario.session;
        let views = self.rng.poisson(session.views_mean);
        let mut cart = None;
        for _ in 0..views {
            t += self.gap();
            let item = self.item();
            self.push(index, t, EventKind::ViewItem { item });
            if self.rng.chance(self.scenario.session.cart_rate) {
                t += self.gap();
                self.push(index, t, EventKind::AddToCart { item });
                cart = Some(item);
            }
        }
        let session = &self.scenario.session;
        if let Some(item) = cart {
            let checkout = session.checkout_rate * f64::from(user.buyer);
            if self.rng.chance(checkout) {
                t += self.gap();
                let amount = self
                    .rng
                    .lognormal(
                        self.scenario.session.amount_median_fen as f64,
                        self.scenario.session.amount_spread,
                    )
                    .round()
                    .max(1.0) as i64;
                self.push(
                    index,
                    t,
                    EventKind::OrderPaid {
                        item,
                        amount_fen: amount,
                    },
                );
                let subscribe = &self.scenario.subscribe;
                if self.rng.chance(subscribe.after_order) {
                    t += self.gap();
                    let accepted =
                        self.prompt(user, Template::OrderStatus, subscribe.accept_after_order);
                    self.push(
                        index,
                        t,
                        EventKind::SubscribePrompt {
                            template: Template::OrderStatus,
                            accepted,
                        },
                    );
                }
            }
        }
        let share = &self.scenario.share;
        if self.rng.chance(share.per_session * f64::from(user.sharer)) {
            t += self.gap();
            let group = self.rng.chance(share.group_share);
            self.push(index, t, EventKind::Share { group });
        }

        // A session running past midnight is squeezed back into the day.
        let last = self.events.last().map_or(start.time, |e| e.time_us);
        if last >= self.clock.end {
            let room = (self.clock.end - 1 - start.time) as f64;
            let span = (last - start.time) as f64;
            for event in &mut self.events[first_event..] {
                event.time_us =
                    start.time + ((event.time_us - start.time) as f64 * room / span) as i64;
            }
        }
        if let Some(EventKind::Share { group }) = self.events.last().map(|e| e.kind) {
            let shared_at = self.events.last().map_or(start.time, |e| e.time_us);
            self.newcomers(index, shared_at, group, start.invites_same_day);
        }
    }

    /// Answers a subscription prompt and books the credit.
    fn prompt(&mut self, user: &mut User, template: Template, accept: f64) -> bool {
        let accepted = self.rng.chance(accept * f64::from(user.subscriber));
        if accepted {
            let slot = &mut user.credits[template.index()];
            *slot = slot.saturating_add(1);
        }
        accepted
    }

    /// Popularity falls steeply with the item number.
    fn item(&mut self) -> u32 {
        let u = self.rng.unit();
        (u * u * u * f64::from(self.scenario.session.items)) as u32
    }

    /// Friends who open a shared card and become users.
    fn newcomers(&mut self, inviter: u32, shared_at: i64, group: bool, same_day: bool) {
        let share = &self.scenario.share;
        let count = self.rng.poisson(share.newcomers_per_share);
        let scene = if group {
            SCENE_GROUP_CARD
        } else {
            SCENE_CHAT_CARD
        };
        for _ in 0..count {
            let opened = shared_at + self.rng.exponential(share.delay_minutes * MINUTE) as i64 + 1;
            let invite = Invite {
                inviter,
                scene,
                time: Some(opened),
            };
            if same_day && opened < self.clock.end {
                self.invites_today.push(invite);
            } else {
                self.invites_tomorrow.push(Invite {
                    time: None,
                    ..invite
                });
            }
        }
    }

    /// Creates today's newcomers in order of arrival and plays their first day.
    fn arrivals(
        &mut self,
        (arrivals, rings): &(Vec<Arrival>, Vec<Ring>),
        base: u32,
        users: &mut Vec<User>,
    ) {
        let mut order: Vec<u32> = (0..arrivals.len() as u32).collect();
        order.sort_by_key(|i| (arrivals[*i as usize].time, *i));
        let mut number = vec![0u32; arrivals.len()];
        for (position, i) in order.iter().enumerate() {
            number[*i as usize] = base + position as u32;
        }
        for i in order {
            let arrival = arrivals[i as usize];
            let index = number[i as usize];
            let inviter = match arrival.referrer {
                Referrer::None => None,
                Referrer::User(user) => Some(user),
                Referrer::RingMember(member) => Some(number[member as usize]),
            };
            match arrival.ring {
                Some(ring) => {
                    let user = self.fraud_account(&rings[ring as usize], arrival.source);
                    users.push(user);
                    let mate = match arrival.referrer {
                        Referrer::RingMember(member) => {
                            Some((number[member as usize], arrivals[member as usize].time))
                        }
                        _ => None,
                    };
                    self.fraud_day(index, arrival, mate, users);
                }
                None => {
                    let inherited = inviter.map(|i| users[i as usize].lambda);
                    let mut user = self.new_user(arrival.source, inherited);
                    self.first_day(index, &mut user, arrival, inviter);
                    users.push(user);
                }
            }
        }
    }

    fn new_user(&mut self, source: Source, inherited: Option<f32>) -> User {
        let params = self.source(source);
        let one_and_done = self.rng.chance(params.one_and_done);
        let mut lambda = self
            .rng
            .gamma(params.engagement_shape, params.engagement_mean);
        if let Some(inviter) = inherited {
            let w = self.scenario.share.inherit;
            lambda = (1.0 - w) * lambda + w * f64::from(inviter);
        }
        let lambda = lambda.min(1.0) as f32;
        let half_life = self
            .rng
            .lognormal(params.half_life_days, params.half_life_spread)
            .max(0.1);
        let decay = 0.5f64.powf(1.0 / half_life) as f32;
        let session = &self.scenario.session;
        let (buyer_spread, share_spread, subscribe_spread) = (
            session.buyer_spread,
            self.scenario.share.propensity_spread,
            self.scenario.subscribe.propensity_spread,
        );
        User {
            lambda,
            engagement: if one_and_done { 0.0 } else { lambda },
            decay,
            buyer: self.rng.mean_one_factor(buyer_spread) as f32,
            sharer: self.rng.mean_one_factor(share_spread) as f32,
            subscriber: self.rng.mean_one_factor(subscribe_spread) as f32,
            device: self.rng.next_u32(),
            ip: random_ip(self.rng),
            arrival: self.day,
            last_active: self.day,
            credits: [0; 3],
            source,
            flags: if one_and_done { ONE_AND_DONE } else { 0 },
        }
    }

    fn first_day(&mut self, index: u32, user: &mut User, arrival: Arrival, inviter: Option<u32>) {
        let session = &self.scenario.session;
        let register = self.rng.chance(session.register_rate);
        let sign_in = self.rng.chance(session.sign_in_rate);
        self.session(
            index,
            user,
            Start {
                time: arrival.time,
                scene: arrival.scene,
                first: Some(arrival.source),
                message: None,
                inviter,
                register,
                sign_in,
                invites_same_day: false,
            },
        );
        let intensity = f64::from(user.lambda.min(1.0));
        let extra = self
            .rng
            .poisson(self.scenario.session.extra_sessions * intensity);
        for _ in 0..extra {
            let time = self.clock.sample_after(arrival.time, self.rng);
            let scene = self.return_scene();
            self.session(
                index,
                user,
                Start {
                    time,
                    scene,
                    first: None,
                    message: None,
                    inviter: None,
                    register: false,
                    sign_in: false,
                    invites_same_day: false,
                },
            );
        }
    }

    fn fraud_account(&mut self, ring: &Ring, source: Source) -> User {
        let device = ring.devices[self.rng.below(ring.devices.len() as u64) as usize];
        let ip = ring.ips[self.rng.below(ring.ips.len() as u64) as usize];
        User {
            lambda: 0.0,
            engagement: 0.0,
            decay: 0.0,
            buyer: 0.0,
            sharer: 0.0,
            subscriber: 0.0,
            device,
            ip,
            arrival: self.day,
            last_active: self.day,
            credits: [0; 3],
            source,
            flags: ONE_AND_DONE | FRAUD,
        }
    }

    /// A ring account's only day: arrive through a ring mate's card, register,
    /// check in for the reward, and never come back.
    fn fraud_day(
        &mut self,
        index: u32,
        arrival: Arrival,
        inviter: Option<(u32, i64)>,
        users: &[User],
    ) {
        let user = &users[index as usize];
        let (device, ip) = (user.device, user.ip);
        if let Some((inviter, inviter_arrived)) = inviter {
            // The ring mate's share lands shortly before the account appears,
            // never before the ring mate itself arrived.
            let back = (5 * SECOND as u64 + self.rng.below(25 * SECOND as u64)) as i64;
            let back = back.min((arrival.time - inviter_arrived) / 2).max(0);
            self.push(
                inviter,
                arrival.time - back,
                EventKind::Share { group: false },
            );
        }
        let mut t = arrival.time;
        self.push(
            index,
            t,
            EventKind::Launch {
                scene: arrival.scene,
                device,
                ip,
                first: Some(arrival.source),
            },
        );
        if let Some((inviter, _)) = inviter {
            t += 1 + self.rng.below(3 * SECOND as u64) as i64;
            self.push(
                index,
                self.clock.clamp(t),
                EventKind::InviteAccepted { inviter },
            );
        }
        t += SECOND as i64 + self.rng.below(20 * SECOND as u64) as i64;
        self.push(index, self.clock.clamp(t), EventKind::Register);
        t += SECOND as i64 + self.rng.below(10 * SECOND as u64) as i64;
        self.push(index, self.clock.clamp(t), EventKind::SignIn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_events_stay_small() {
        assert!(std::mem::size_of::<User>() <= 44);
        assert!(std::mem::size_of::<SimEvent>() <= 40);
    }

    #[test]
    fn arrival_budgets_add_up_and_follow_the_trend() {
        let mut scenario = Scenario::default();
        scenario.arrivals.end_to_start = 3.0;
        scenario.rhythm.weekday = [1.0; 7];
        let config = SimConfig {
            seed: 1,
            users: 10_007,
            days: 30,
            start: jiff::civil::date(2026, 1, 1),
            timezone: TimeZone::UTC,
        };
        let budget = arrival_budget(&scenario, &config).unwrap();
        assert_eq!(budget.iter().map(|b| u64::from(*b)).sum::<u64>(), 10_007);
        let ratio = f64::from(budget[29]) / f64::from(budget[0]);
        assert!((2.8..3.2).contains(&ratio), "{ratio}");
    }
}
