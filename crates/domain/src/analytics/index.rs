//! The activity index: per local day, a roaring bitmap of the users (dense
//! indexes) active that day, of the users first active that day, and of the users
//! who sent each tracked event.
//!
//! Stored as rows of bitmaps that are only ever OR-ed together. A batch of events
//! writes its own small rows; merging rows is a union, so a row written twice,
//! rows written by several nodes at once and rows merged by compaction all give
//! the same index. "First active" is the one fact a union cannot express (it moves
//! earlier when older events arrive), so those rows hold *candidates* and a user's
//! first active day is the earliest day any candidate row names them on.

use super::day::LocalDay;
use super::settings::AnalyticsSettings;
use jiff::tz::TimeZone;
use roaring::RoaringBitmap;
use std::collections::{BTreeMap, HashMap};
use std::io;

/// What a bitmap row records about its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BitmapKind {
    /// Users with at least one activity event that day.
    Active,
    /// Users whose first activity event may be that day (see the module notes).
    FirstActive,
    /// Users who sent the row's tracked event that day, activity or not.
    Event,
}

impl BitmapKind {
    /// The small integer a store keeps for the kind.
    pub fn code(self) -> i16 {
        match self {
            BitmapKind::Active => 0,
            BitmapKind::FirstActive => 1,
            BitmapKind::Event => 2,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(BitmapKind::Active),
            1 => Some(BitmapKind::FirstActive),
            2 => Some(BitmapKind::Event),
            _ => None,
        }
    }
}

/// One row of the index: a set of users for a day, a kind and (for
/// [`BitmapKind::Event`]) an event name; the name is empty otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct DayBitmap {
    pub day: LocalDay,
    pub kind: BitmapKind,
    pub event: String,
    pub users: RoaringBitmap,
}

impl DayBitmap {
    /// The portable roaring serialisation (readable by CRoaring, Java, Go…).
    pub fn users_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.users.serialized_size());
        self.users
            .serialize_into(&mut bytes)
            .expect("writing to a Vec cannot fail");
        bytes
    }

    /// Rebuilds a row from stored columns.
    pub fn from_stored(day: i32, kind: i16, event: String, bytes: &[u8]) -> io::Result<Self> {
        Self::from_parts(day, kind, event, RoaringBitmap::deserialize_from(bytes)?)
    }

    /// A row from a stored key and a set of users.
    pub fn from_parts(
        day: i32,
        kind: i16,
        event: String,
        users: RoaringBitmap,
    ) -> io::Result<Self> {
        let kind = BitmapKind::from_code(kind)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown bitmap kind"))?;
        Ok(Self {
            day: LocalDay::from_number(day),
            kind,
            event,
            users,
        })
    }
}

/// The stored kind code of a row that packs many [`DayBitmap`]s (a batch's delta)
/// into one blob: one insert per batch however many days it touches.
pub const PACKED_ROWS_KIND: i16 = 3;

const PACK_VERSION: u8 = 1;

/// Packs rows into one blob: a version byte, then per row its day (i32), kind
/// (i16), event name length (u16) and bytes, bitmap length (u32) and portable
/// roaring bytes, all little-endian.
pub fn pack_rows(rows: &[DayBitmap]) -> Vec<u8> {
    let mut out = vec![PACK_VERSION];
    for row in rows {
        out.extend_from_slice(&row.day.number().to_le_bytes());
        out.extend_from_slice(&row.kind.code().to_le_bytes());
        out.extend_from_slice(&(row.event.len() as u16).to_le_bytes());
        out.extend_from_slice(row.event.as_bytes());
        out.extend_from_slice(&(row.users.serialized_size() as u32).to_le_bytes());
        row.users
            .serialize_into(&mut out)
            .expect("writing to a Vec cannot fail");
    }
    out
}

/// Reverses [`pack_rows`].
pub fn unpack_rows(bytes: &[u8]) -> io::Result<Vec<DayBitmap>> {
    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("packed rows: {what}"))
    }
    fn take<'b>(rest: &mut &'b [u8], n: usize) -> io::Result<&'b [u8]> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn number<const N: usize>(rest: &mut &[u8]) -> io::Result<[u8; N]> {
        Ok(take(rest, N)?.try_into().expect("take returns N bytes"))
    }
    let (&version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if version != PACK_VERSION {
        return Err(bad("unknown version"));
    }
    let mut rows = Vec::new();
    while !rest.is_empty() {
        let day = i32::from_le_bytes(number(&mut rest)?);
        let kind = i16::from_le_bytes(number(&mut rest)?);
        let name_len = u16::from_le_bytes(number(&mut rest)?) as usize;
        let event = String::from_utf8(take(&mut rest, name_len)?.to_vec())
            .map_err(|_| bad("event name"))?;
        let bitmap_len = u32::from_le_bytes(number(&mut rest)?) as usize;
        rows.push(DayBitmap::from_stored(
            day,
            kind,
            event,
            take(&mut rest, bitmap_len)?,
        )?);
    }
    Ok(rows)
}

/// Unions rows that share a day, kind and event: compaction's merge.
pub fn merge_rows(rows: impl IntoIterator<Item = DayBitmap>) -> Vec<DayBitmap> {
    let mut merged: BTreeMap<(LocalDay, BitmapKind, String), RoaringBitmap> = BTreeMap::new();
    for row in rows {
        union_into(
            merged.entry((row.day, row.kind, row.event)).or_default(),
            row.users,
        );
    }
    merged
        .into_iter()
        .map(|((day, kind, event), users)| DayBitmap {
            day,
            kind,
            event,
            users,
        })
        .collect()
}

/// Rows as a store keeps them: a packed batch (kind [`PACKED_ROWS_KIND`]) opens into its rows.
pub fn rows_from_stored(
    day: i32,
    kind: i16,
    event: String,
    bytes: &[u8],
) -> io::Result<Vec<DayBitmap>> {
    if kind == PACKED_ROWS_KIND {
        unpack_rows(bytes)
    } else {
        DayBitmap::from_stored(day, kind, event, bytes).map(|row| vec![row])
    }
}

/// What one batch of stored events adds to the index, and the users whose
/// earliest known activity moved earlier.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ActivityDelta {
    pub bitmaps: Vec<DayBitmap>,
    /// `(user index, first activity in UTC microseconds)`, sorted by user, so
    /// concurrent writers lock user rows in one order.
    pub first_active: Vec<(u32, i64)>,
}

/// Collects a batch of events (or every event of an app, for a rebuild) into index rows.
pub struct DeltaBuilder<'a> {
    zone: &'a TimeZone,
    settings: &'a AnalyticsSettings,
    active: BTreeMap<LocalDay, RoaringBitmap>,
    events: BTreeMap<(LocalDay, String), RoaringBitmap>,
    earliest: HashMap<u32, i64>,
}

impl<'a> DeltaBuilder<'a> {
    pub fn new(zone: &'a TimeZone, settings: &'a AnalyticsSettings) -> Self {
        Self {
            zone,
            settings,
            active: BTreeMap::new(),
            events: BTreeMap::new(),
            earliest: HashMap::new(),
        }
    }

    /// Adds one stored event: `micros` is its time in UTC microseconds.
    pub fn add(&mut self, user: u32, micros: i64, name: &str) {
        let is_activity = self.settings.counts_as_activity(name);
        let is_tracked = self.settings.is_tracked(name);
        if !is_activity && !is_tracked {
            return;
        }
        let day = LocalDay::of_micros(self.zone, micros);
        if is_activity {
            self.active.entry(day).or_default().insert(user);
            self.earliest
                .entry(user)
                .and_modify(|t| *t = (*t).min(micros))
                .or_insert(micros);
        }
        if is_tracked {
            match self.events.get_mut(&(day, name.to_string())) {
                Some(users) => {
                    users.insert(user);
                }
                None => {
                    self.events
                        .insert((day, name.to_string()), RoaringBitmap::from_iter([user]));
                }
            }
        }
    }

    /// Finishes the delta. `stored_first_active` gives each user's earliest activity
    /// as the store knew it before this batch (`None`: no activity yet).
    ///
    /// A user becomes a first-active candidate on the day of their earliest event in
    /// the batch unless the store already knows an earlier one. Equal times count as
    /// candidates too: a batch retried after a crash must still name its users.
    pub fn finish(self, stored_first_active: impl Fn(u32) -> Option<i64>) -> ActivityDelta {
        let mut first_days: BTreeMap<LocalDay, RoaringBitmap> = BTreeMap::new();
        let mut moved = Vec::new();
        for (&user, &micros) in &self.earliest {
            let known = stored_first_active(user);
            if known.is_none_or(|known| micros <= known) {
                first_days
                    .entry(LocalDay::of_micros(self.zone, micros))
                    .or_default()
                    .insert(user);
            }
            if known.is_none_or(|known| micros < known) {
                moved.push((user, micros));
            }
        }
        moved.sort_unstable();
        let mut bitmaps = Vec::new();
        let plain = |kind, map: BTreeMap<LocalDay, RoaringBitmap>| {
            map.into_iter().map(move |(day, users)| DayBitmap {
                day,
                kind,
                event: String::new(),
                users,
            })
        };
        bitmaps.extend(plain(BitmapKind::Active, self.active));
        bitmaps.extend(plain(BitmapKind::FirstActive, first_days));
        bitmaps.extend(
            self.events
                .into_iter()
                .map(|((day, event), users)| DayBitmap {
                    day,
                    kind: BitmapKind::Event,
                    event,
                    users,
                }),
        );
        ActivityDelta {
            bitmaps,
            first_active: moved,
        }
    }
}

/// The index of one app held in memory: what analytics queries read.
#[derive(Debug, Clone, Default)]
pub struct ActivityIndex {
    active: BTreeMap<LocalDay, RoaringBitmap>,
    /// Resolved: every user appears on exactly one day, their earliest.
    first_active: BTreeMap<LocalDay, RoaringBitmap>,
    events: BTreeMap<String, BTreeMap<LocalDay, RoaringBitmap>>,
    /// First active day by user index; `i32::MAX` for users with no activity yet.
    first_day_of: Vec<i32>,
}

static EMPTY: std::sync::LazyLock<RoaringBitmap> = std::sync::LazyLock::new(RoaringBitmap::new);

impl ActivityIndex {
    /// Merges one row in. Order does not matter and repeating a row changes nothing.
    pub fn apply(&mut self, row: DayBitmap) {
        match row.kind {
            BitmapKind::Active => union_into(self.active.entry(row.day).or_default(), row.users),
            BitmapKind::Event => union_into(
                self.events
                    .entry(row.event)
                    .or_default()
                    .entry(row.day)
                    .or_default(),
                row.users,
            ),
            BitmapKind::FirstActive => self.apply_first_active(row.day, &row.users),
        }
    }

    fn apply_first_active(&mut self, day: LocalDay, users: &RoaringBitmap) {
        if let Some(max) = users.max() {
            if self.first_day_of.len() <= max as usize {
                self.first_day_of.resize(max as usize + 1, i32::MAX);
            }
        }
        let mut gained = RoaringBitmap::new();
        for user in users {
            let known = self.first_day_of[user as usize];
            if day.number() < known {
                if known != i32::MAX {
                    if let Some(old) = self.first_active.get_mut(&LocalDay::from_number(known)) {
                        old.remove(user);
                        if old.is_empty() {
                            self.first_active.remove(&LocalDay::from_number(known));
                        }
                    }
                }
                self.first_day_of[user as usize] = day.number();
                gained.insert(user);
            }
        }
        if !gained.is_empty() {
            union_into(self.first_active.entry(day).or_default(), gained);
        }
    }

    /// Users active on `day`.
    pub fn active(&self, day: LocalDay) -> &RoaringBitmap {
        self.active.get(&day).unwrap_or(&EMPTY)
    }

    /// Users whose first activity was on `day` (a day's new users).
    pub fn first_active(&self, day: LocalDay) -> &RoaringBitmap {
        self.first_active.get(&day).unwrap_or(&EMPTY)
    }

    /// Users who sent the tracked event `name` on `day`.
    pub fn event(&self, name: &str, day: LocalDay) -> &RoaringBitmap {
        self.events
            .get(name)
            .and_then(|days| days.get(&day))
            .unwrap_or(&EMPTY)
    }

    /// The earliest and latest day with any activity.
    pub fn active_span(&self) -> Option<(LocalDay, LocalDay)> {
        let first = self.active.keys().next()?;
        let last = self.active.keys().next_back()?;
        Some((*first, *last))
    }

    /// A user's first active day, if they have been active.
    pub fn first_day_of(&self, user: u32) -> Option<LocalDay> {
        self.first_day_of
            .get(user as usize)
            .filter(|&&day| day != i32::MAX)
            .map(|&day| LocalDay::from_number(day))
    }

    /// The index as rows, fully merged: what compaction stores in place of many small rows.
    pub fn to_rows(&self) -> Vec<DayBitmap> {
        let plain = |kind, map: &BTreeMap<LocalDay, RoaringBitmap>| {
            map.iter()
                .map(|(&day, users)| DayBitmap {
                    day,
                    kind,
                    event: String::new(),
                    users: users.clone(),
                })
                .collect::<Vec<_>>()
        };
        let mut rows = plain(BitmapKind::Active, &self.active);
        rows.extend(plain(BitmapKind::FirstActive, &self.first_active));
        for (event, days) in &self.events {
            rows.extend(days.iter().map(|(&day, users)| DayBitmap {
                day,
                kind: BitmapKind::Event,
                event: event.clone(),
                users: users.clone(),
            }));
        }
        rows
    }

    /// Bytes the bitmaps and the first-day table take, for reports and benchmarks.
    pub fn memory_bytes(&self) -> usize {
        let bitmaps = self
            .active
            .values()
            .chain(self.first_active.values())
            .chain(self.events.values().flat_map(|days| days.values()))
            .map(|users| users.serialized_size())
            .sum::<usize>();
        bitmaps + self.first_day_of.capacity() * std::mem::size_of::<i32>()
    }
}

fn union_into(target: &mut RoaringBitmap, users: RoaringBitmap) {
    if target.is_empty() {
        *target = users;
    } else {
        *target |= users;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    const DAY_US: i64 = 86_400_000_000;
    // 2026-11-23T00:00:00+08:00
    const MONDAY_US: i64 = 1_795_363_200_000_000;

    fn day(n: i64) -> LocalDay {
        LocalDay::of_micros(&shanghai(), MONDAY_US + n * DAY_US)
    }

    fn build(events: &[(u32, i64, &str)], known: &HashMap<u32, i64>) -> ActivityDelta {
        let zone = shanghai();
        let settings = AnalyticsSettings {
            tracked_events: vec!["order_paid".into()],
            ..Default::default()
        };
        let mut builder = DeltaBuilder::new(&zone, &settings);
        for &(user, micros, name) in events {
            builder.add(user, micros, name);
        }
        builder.finish(|u| known.get(&u).copied())
    }

    #[test]
    fn a_batch_marks_activity_first_activity_and_tracked_events() {
        let delta = build(
            &[
                (1, MONDAY_US + 10, "app_launch"),
                (1, MONDAY_US + DAY_US, "order_paid"),
                (2, MONDAY_US + DAY_US, "$message_sent"),
            ],
            &HashMap::new(),
        );
        let mut index = ActivityIndex::default();
        for row in delta.bitmaps {
            index.apply(row);
        }
        assert_eq!(index.active(day(0)).iter().collect::<Vec<_>>(), [1]);
        assert_eq!(index.active(day(1)).iter().collect::<Vec<_>>(), [1]);
        assert_eq!(index.first_active(day(0)).iter().collect::<Vec<_>>(), [1]);
        assert!(index.first_active(day(1)).is_empty());
        assert_eq!(index.event("order_paid", day(1)).len(), 1);
        assert_eq!(delta.first_active, [(1, MONDAY_US + 10)]);
        // huiliu's own events never make anyone active.
        assert_eq!(index.first_day_of(2), None);
    }

    #[test]
    fn an_older_event_arriving_late_moves_the_first_active_day() {
        let mut index = ActivityIndex::default();
        for row in build(
            &[(7, MONDAY_US + 3 * DAY_US, "app_launch")],
            &HashMap::new(),
        )
        .bitmaps
        {
            index.apply(row);
        }
        assert_eq!(index.first_day_of(7), Some(day(3)));
        let known = HashMap::from([(7, MONDAY_US + 3 * DAY_US)]);
        let late = build(&[(7, MONDAY_US, "app_launch")], &known);
        assert_eq!(late.first_active, [(7, MONDAY_US)]);
        for row in late.bitmaps {
            index.apply(row);
        }
        assert_eq!(index.first_day_of(7), Some(day(0)));
        assert!(index.first_active(day(3)).is_empty());
        assert_eq!(index.first_active(day(0)).len(), 1);
        // A later event for a known user is no candidate at all.
        let later = build(
            &[(7, MONDAY_US + 5 * DAY_US, "app_launch")],
            &HashMap::from([(7, MONDAY_US)]),
        );
        assert!(later
            .bitmaps
            .iter()
            .all(|b| b.kind != BitmapKind::FirstActive));
        assert!(later.first_active.is_empty());
    }

    #[test]
    fn packed_rows_unpack_to_the_same_rows() {
        let delta = build(
            &[
                (3, MONDAY_US, "order_paid"),
                (4, MONDAY_US + 2 * DAY_US, "app_launch"),
            ],
            &HashMap::new(),
        );
        let packed = pack_rows(&delta.bitmaps);
        assert_eq!(unpack_rows(&packed).unwrap(), delta.bitmaps);
        assert_eq!(unpack_rows(&pack_rows(&[])).unwrap(), vec![]);
        assert!(unpack_rows(&packed[..packed.len() - 1]).is_err());
        assert!(unpack_rows(&[9]).is_err());
        assert!(unpack_rows(&[]).is_err());
    }

    #[test]
    fn rows_survive_their_stored_form() {
        let delta = build(&[(3, MONDAY_US, "order_paid")], &HashMap::new());
        for row in delta.bitmaps {
            let back = DayBitmap::from_stored(
                row.day.number(),
                row.kind.code(),
                row.event.clone(),
                &row.users_bytes(),
            )
            .unwrap();
            assert_eq!(back, row);
        }
        assert!(DayBitmap::from_stored(0, 9, String::new(), &[]).is_err());
        assert!(DayBitmap::from_stored(0, 0, String::new(), b"garbage").is_err());
    }

    proptest! {
        /// However a history is cut into batches, in whatever order the batches (or
        /// repeats of them) arrive, the index equals the one built from all events
        /// at once, and first-active days are each user's earliest activity day.
        #[test]
        fn batches_in_any_order_and_repeated_give_the_same_index(
            events in prop::collection::vec((0u32..40, 0i64..(20 * DAY_US), prop::sample::select(vec!["app_launch", "order_paid", "$points_earned"])), 1..120),
            cuts in prop::collection::vec(0usize..120, 0..6),
            order_seed in any::<u64>(),
        ) {
            let events: Vec<(u32, i64, &str)> = events.into_iter().map(|(u, t, n)| (u, MONDAY_US + t, n)).collect();
            let whole = {
                let mut index = ActivityIndex::default();
                for row in build(&events, &HashMap::new()).bitmaps { index.apply(row); }
                index
            };
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (events.len() + 1)).collect();
            bounds.push(0);
            bounds.push(events.len());
            bounds.sort_unstable();
            let mut batches: Vec<&[(u32, i64, &str)]> = bounds.windows(2).map(|w| &events[w[0]..w[1]]).collect();
            // A deterministic shuffle, and every batch sent twice.
            let mut state = order_seed | 1;
            for i in (1..batches.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                batches.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut stored_first: HashMap<u32, i64> = HashMap::new();
            let mut index = ActivityIndex::default();
            for batch in batches.iter().chain(batches.iter()) {
                let delta = build(batch, &stored_first);
                for (user, micros) in &delta.first_active {
                    let entry = stored_first.entry(*user).or_insert(*micros);
                    *entry = (*entry).min(*micros);
                }
                for row in delta.bitmaps { index.apply(row); }
            }
            prop_assert_eq!(index.to_rows(), whole.to_rows());
            for (user, micros) in &stored_first {
                prop_assert_eq!(index.first_day_of(*user), Some(LocalDay::of_micros(&shanghai(), *micros)));
            }
            // Compacted rows rebuild the same index.
            let mut compacted = ActivityIndex::default();
            for row in index.to_rows() { compacted.apply(row); }
            prop_assert_eq!(compacted.to_rows(), whole.to_rows());
        }
    }
}
