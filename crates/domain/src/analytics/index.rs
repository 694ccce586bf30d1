//! The activity index: per local day, a roaring bitmap of the users (dense
//! indexes) active that day, of the users first active that day, and of the users
//! who sent each tracked event.
//!
//! Stored as rows of bitmaps that are only ever OR-ed together. A batch of events
//! writes its own small rows; merging rows is a union, so a row written twice,
//! rows written by several nodes at once and rows merged by compaction all give
//! the same index. "First active" is the one fact a union cannot express (it moves
//! earlier when older events arrive), so a batch names each of its active users as
//! a *candidate* on the day of their earliest event in the batch, and a user's
//! first active day is the earliest day any row names them on. Compaction
//! resolves the candidates, so stored first-active rows name each user once.

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

const PACK_VERSION: u8 = 2;

/// Packs rows into one blob: a version byte, then per row its day (i32), kind
/// (i16), event name length (u16) and bytes, user count (u32) and the users as
/// sorted u32s, all little-endian. A batch's bitmaps are small, and plain
/// integers are both smaller than roaring's containers and cheaper to merge.
pub fn pack_rows(rows: &[DayBitmap]) -> Vec<u8> {
    let size: usize = rows
        .iter()
        .map(|r| 12 + r.event.len() + 4 * r.users.len() as usize)
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(PACK_VERSION);
    for row in rows {
        out.extend_from_slice(&row.day.number().to_le_bytes());
        out.extend_from_slice(&row.kind.code().to_le_bytes());
        out.extend_from_slice(&(row.event.len() as u16).to_le_bytes());
        out.extend_from_slice(row.event.as_bytes());
        out.extend_from_slice(&(row.users.len() as u32).to_le_bytes());
        for user in &row.users {
            out.extend_from_slice(&user.to_le_bytes());
        }
    }
    out
}

/// Reverses [`pack_rows`] (rows come back ordered by day, kind and event).
pub fn unpack_rows(bytes: &[u8]) -> io::Result<Vec<DayBitmap>> {
    merge_packed([bytes])
}

/// Opens packed blobs and unions their rows by day, kind and event, without
/// building a bitmap per packed row.
pub fn merge_packed<'b>(blobs: impl IntoIterator<Item = &'b [u8]>) -> io::Result<Vec<DayBitmap>> {
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
    let mut merged = KeyedBitmaps::new();
    for bytes in blobs {
        let (&version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != PACK_VERSION {
            return Err(bad("unknown version"));
        }
        while !rest.is_empty() {
            let day = LocalDay::from_number(i32::from_le_bytes(number(&mut rest)?));
            let kind = BitmapKind::from_code(i16::from_le_bytes(number(&mut rest)?))
                .ok_or_else(|| bad("unknown bitmap kind"))?;
            let name_len = u16::from_le_bytes(number(&mut rest)?) as usize;
            let event = String::from_utf8(take(&mut rest, name_len)?.to_vec())
                .map_err(|_| bad("event name"))?;
            let count = u32::from_le_bytes(number(&mut rest)?) as usize;
            let users = take(&mut rest, count.checked_mul(4).ok_or_else(|| bad("count"))?)?;
            let target = merged.entry((day, kind, event)).or_default();
            for user in users.chunks_exact(4) {
                target.insert(u32::from_le_bytes(user.try_into().expect("4 bytes")));
            }
        }
    }
    Ok(rows_of(merged))
}

type KeyedBitmaps = BTreeMap<(LocalDay, BitmapKind, String), RoaringBitmap>;

fn rows_of(merged: KeyedBitmaps) -> Vec<DayBitmap> {
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

/// Unions rows that share a day, kind and event: compaction's merge.
pub fn merge_rows(rows: impl IntoIterator<Item = DayBitmap>) -> Vec<DayBitmap> {
    let mut merged = KeyedBitmaps::new();
    for row in rows {
        union_into(
            merged.entry((row.day, row.kind, row.event)).or_default(),
            row.users,
        );
    }
    rows_of(merged)
}

/// Rows as a store keeps them, opened: packed batches (kind [`PACKED_ROWS_KIND`])
/// merged together, other rows decoded as they are.
pub fn open_stored<'b>(
    rows: impl IntoIterator<Item = (i32, i16, String, &'b [u8])>,
) -> io::Result<Vec<DayBitmap>> {
    let mut packed = Vec::new();
    let mut opened = Vec::new();
    for (day, kind, event, bytes) in rows {
        if kind == PACKED_ROWS_KIND {
            packed.push(bytes);
        } else {
            opened.push(DayBitmap::from_stored(day, kind, event, bytes)?);
        }
    }
    opened.extend(merge_packed(packed)?);
    Ok(opened)
}

/// What one batch of stored events adds to the index.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ActivityDelta {
    pub bitmaps: Vec<DayBitmap>,
    /// Users with at least one activity event in the batch.
    pub active_users: u64,
}

/// Collects a batch of events (or every event of an app, for a rebuild) into index rows.
pub struct DeltaBuilder<'a> {
    zone: &'a TimeZone,
    settings: &'a AnalyticsSettings,
    active: BTreeMap<LocalDay, RoaringBitmap>,
    /// By event name, then day: looked up by `&str`, so a tracked event costs no allocation.
    events: BTreeMap<String, BTreeMap<LocalDay, RoaringBitmap>>,
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
            let days = match self.events.get_mut(name) {
                Some(days) => days,
                None => self.events.entry(name.to_string()).or_default(),
            };
            days.entry(day).or_default().insert(user);
        }
    }

    /// Finishes the delta: each active user becomes a first-active candidate on
    /// the day of their earliest activity in the batch. No stored state is read,
    /// so the ingest path writes nothing per user; a user already first active
    /// earlier is dropped from the candidates by compaction (and by readers).
    pub fn finish(self) -> ActivityDelta {
        let mut first_days: BTreeMap<LocalDay, RoaringBitmap> = BTreeMap::new();
        for (&user, &micros) in &self.earliest {
            first_days
                .entry(LocalDay::of_micros(self.zone, micros))
                .or_default()
                .insert(user);
        }
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
        for (event, days) in self.events {
            bitmaps.extend(days.into_iter().map(|(day, users)| DayBitmap {
                day,
                kind: BitmapKind::Event,
                event: event.clone(),
                users,
            }));
        }
        ActivityDelta {
            bitmaps,
            active_users: self.earliest.len() as u64,
        }
    }
}

/// Compaction of first-active rows: given every stored (resolved) first-active
/// row of an app and new candidate rows, the rows of the days that changed, each
/// naming exactly the users whose earliest day it is (possibly none: the stored
/// row of that day is then dropped).
pub fn resolve_first_active(
    stored: impl IntoIterator<Item = DayBitmap>,
    candidates: impl IntoIterator<Item = DayBitmap>,
) -> Vec<DayBitmap> {
    let mut index = ActivityIndex::default();
    for row in stored {
        index.apply(row);
    }
    let mut changed = std::collections::BTreeSet::new();
    for row in candidates {
        index.apply_first_active(row.day, &row.users, &mut changed);
    }
    changed
        .into_iter()
        .map(|day| DayBitmap {
            day,
            kind: BitmapKind::FirstActive,
            event: String::new(),
            users: index.first_active(day).clone(),
        })
        .collect()
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
            BitmapKind::FirstActive => {
                self.apply_first_active(row.day, &row.users, &mut Default::default())
            }
        }
    }

    /// Moves users to `day` unless they are first active earlier; `changed`
    /// collects the days whose first-active set changed.
    fn apply_first_active(
        &mut self,
        day: LocalDay,
        users: &RoaringBitmap,
        changed: &mut std::collections::BTreeSet<LocalDay>,
    ) {
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
                    let old_day = LocalDay::from_number(known);
                    if let Some(old) = self.first_active.get_mut(&old_day) {
                        old.remove(user);
                        if old.is_empty() {
                            self.first_active.remove(&old_day);
                        }
                    }
                    changed.insert(old_day);
                }
                self.first_day_of[user as usize] = day.number();
                gained.insert(user);
            }
        }
        if !gained.is_empty() {
            changed.insert(day);
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

    fn build(events: &[(u32, i64, &str)]) -> ActivityDelta {
        let zone = shanghai();
        let settings = AnalyticsSettings {
            tracked_events: vec!["order_paid".into()],
            ..Default::default()
        };
        let mut builder = DeltaBuilder::new(&zone, &settings);
        for &(user, micros, name) in events {
            builder.add(user, micros, name);
        }
        builder.finish()
    }

    fn users(bitmap: &RoaringBitmap) -> Vec<u32> {
        bitmap.iter().collect()
    }

    #[test]
    fn a_batch_marks_activity_first_activity_and_tracked_events() {
        let delta = build(&[
            (1, MONDAY_US + 10, "app_launch"),
            (1, MONDAY_US + DAY_US, "order_paid"),
            (2, MONDAY_US + DAY_US, "$message_sent"),
        ]);
        assert_eq!(delta.active_users, 1);
        let mut index = ActivityIndex::default();
        for row in delta.bitmaps {
            index.apply(row);
        }
        assert_eq!(users(index.active(day(0))), [1]);
        assert_eq!(users(index.active(day(1))), [1]);
        assert_eq!(users(index.first_active(day(0))), [1]);
        assert!(index.first_active(day(1)).is_empty());
        assert_eq!(index.event("order_paid", day(1)).len(), 1);
        // huiliu's own events never make anyone active.
        assert_eq!(index.first_day_of(2), None);
    }

    #[test]
    fn an_older_event_arriving_late_moves_the_first_active_day() {
        let mut index = ActivityIndex::default();
        for row in build(&[(7, MONDAY_US + 3 * DAY_US, "app_launch")]).bitmaps {
            index.apply(row);
        }
        assert_eq!(index.first_day_of(7), Some(day(3)));
        for row in build(&[(7, MONDAY_US, "app_launch")]).bitmaps {
            index.apply(row);
        }
        assert_eq!(index.first_day_of(7), Some(day(0)));
        assert!(index.first_active(day(3)).is_empty());
        assert_eq!(index.first_active(day(0)).len(), 1);
        // A later batch names the user again; the earlier day stands.
        for row in build(&[(7, MONDAY_US + 5 * DAY_US, "app_launch")]).bitmaps {
            index.apply(row);
        }
        assert_eq!(index.first_day_of(7), Some(day(0)));
        assert!(index.first_active(day(5)).is_empty());
    }

    #[test]
    fn compaction_resolves_candidates_into_one_day_per_user() {
        let first = build(&[
            (1, MONDAY_US + 2 * DAY_US, "app_launch"),
            (2, MONDAY_US + 2 * DAY_US, "app_launch"),
        ]);
        let stored = resolve_first_active(
            [],
            first
                .bitmaps
                .into_iter()
                .filter(|r| r.kind == BitmapKind::FirstActive),
        );
        assert_eq!(stored.len(), 1);
        assert_eq!(users(&stored[0].users), [1, 2]);
        // User 1 turns out to have been active two days earlier; user 2 comes back later.
        let more = build(&[
            (1, MONDAY_US, "app_launch"),
            (2, MONDAY_US + 4 * DAY_US, "app_launch"),
        ]);
        let changed = resolve_first_active(
            stored,
            more.bitmaps
                .into_iter()
                .filter(|r| r.kind == BitmapKind::FirstActive),
        );
        let by_day: Vec<(LocalDay, Vec<u32>)> =
            changed.iter().map(|r| (r.day, users(&r.users))).collect();
        assert_eq!(by_day, [(day(0), vec![1]), (day(2), vec![2])]);
    }

    #[test]
    fn packed_rows_unpack_to_the_same_rows() {
        let delta = build(&[
            (3, MONDAY_US, "order_paid"),
            (4, MONDAY_US + 2 * DAY_US, "app_launch"),
        ]);
        let packed = pack_rows(&delta.bitmaps);
        let mut expected = delta.bitmaps.clone();
        expected.sort_by(|a, b| (a.day, a.kind, &a.event).cmp(&(b.day, b.kind, &b.event)));
        assert_eq!(unpack_rows(&packed).unwrap(), expected);
        let twice = merge_packed([&packed[..], &packed[..]]).unwrap();
        assert_eq!(twice, expected);
        assert_eq!(unpack_rows(&pack_rows(&[])).unwrap(), vec![]);
        assert!(unpack_rows(&packed[..packed.len() - 1]).is_err());
        assert!(unpack_rows(&[9]).is_err());
        assert!(unpack_rows(&[]).is_err());
    }

    #[test]
    fn rows_survive_their_stored_form() {
        let delta = build(&[(3, MONDAY_US, "order_paid")]);
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
        /// at once; first-active days are each user's earliest activity day; and
        /// compacting the candidates (in any grouping) stores the same resolved rows.
        #[test]
        fn batches_in_any_order_and_repeated_give_the_same_index(
            events in prop::collection::vec((0u32..40, 0i64..(20 * DAY_US), prop::sample::select(vec!["app_launch", "order_paid", "$points_earned"])), 1..120),
            cuts in prop::collection::vec(0usize..120, 0..6),
            order_seed in any::<u64>(),
        ) {
            let events: Vec<(u32, i64, &str)> = events.into_iter().map(|(u, t, n)| (u, MONDAY_US + t, n)).collect();
            let whole = {
                let mut index = ActivityIndex::default();
                for row in build(&events).bitmaps { index.apply(row); }
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
            let mut index = ActivityIndex::default();
            let mut stored_first: Vec<DayBitmap> = Vec::new();
            for (i, batch) in batches.iter().chain(batches.iter()).enumerate() {
                let delta = build(batch);
                let candidates: Vec<DayBitmap> = delta.bitmaps.iter().filter(|r| r.kind == BitmapKind::FirstActive).cloned().collect();
                for row in delta.bitmaps { index.apply(row); }
                // Compact after some batches only: resolution must not depend on grouping.
                if i % 2 == 0 {
                    let changed = resolve_first_active(stored_first.clone(), candidates);
                    let changed_days: Vec<LocalDay> = changed.iter().map(|r| r.day).collect();
                    stored_first.retain(|r| !changed_days.contains(&r.day));
                    stored_first.extend(changed.into_iter().filter(|r| !r.users.is_empty()));
                } else {
                    stored_first.extend(candidates);
                }
            }
            prop_assert_eq!(index.to_rows(), whole.to_rows());
            for &(user, micros, name) in &events {
                if name != "$points_earned" {
                    let earliest = events.iter().filter(|e| e.0 == user && e.2 != "$points_earned").map(|e| e.1).min().unwrap();
                    prop_assert_eq!(index.first_day_of(user), Some(LocalDay::of_micros(&shanghai(), earliest)));
                    prop_assert!(micros >= earliest);
                }
            }
            // The stored first-active rows, read back, give the same first days.
            let mut from_stored = ActivityIndex::default();
            for row in stored_first { from_stored.apply(row); }
            let first_rows = |index: &ActivityIndex| index.to_rows().into_iter().filter(|r| r.kind == BitmapKind::FirstActive).collect::<Vec<_>>();
            prop_assert_eq!(first_rows(&from_stored), first_rows(&whole));
            let mut compacted = ActivityIndex::default();
            for row in index.to_rows() { compacted.apply(row); }
            prop_assert_eq!(compacted.to_rows(), whole.to_rows());
        }
    }
}
