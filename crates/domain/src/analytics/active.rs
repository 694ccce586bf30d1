//! Daily, weekly and monthly active users, per local day.

use super::day::LocalDay;
use super::index::ActivityIndex;
use super::range::DayRange;
use roaring::RoaringBitmap;
use serde::Serialize;

/// One day of the active-users series. Counts are `None` for days that have not begun.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveDay {
    pub date: String,
    pub dau: Option<u64>,
    /// Distinct users active in the 7 local days ending with this one.
    pub wau: Option<u64>,
    /// Distinct users active in the 30 local days ending with this one.
    pub mau: Option<u64>,
    /// Users first active this day.
    pub new: Option<u64>,
    /// DAU / MAU; `None` when MAU is zero.
    pub stickiness: Option<f64>,
    /// False for today, whose numbers still grow.
    pub complete: bool,
}

pub const WAU_DAYS: usize = 7;
pub const MAU_DAYS: usize = 30;

pub fn active_series(index: &ActivityIndex, range: DayRange, today: LocalDay) -> Vec<ActiveDay> {
    let lead = MAU_DAYS as i32 - 1;
    let days: Vec<&RoaringBitmap> = range
        .from
        .plus(-lead)
        .through(range.to)
        .map(|day| index.active(day))
        .collect();
    let wau = sliding_union_len(&days, WAU_DAYS);
    let mau = sliding_union_len(&days, MAU_DAYS);
    range
        .days()
        .enumerate()
        .map(|(i, day)| {
            let at = i + lead as usize;
            let started = day <= today;
            let dau = days[at].len();
            let mau_count = mau[at];
            ActiveDay {
                date: day.to_string(),
                dau: started.then_some(dau),
                wau: started.then_some(wau[at]),
                mau: started.then_some(mau_count),
                new: started.then(|| index.first_active(day).len()),
                stickiness: (started && mau_count > 0).then(|| dau as f64 / mau_count as f64),
                complete: day < today,
            }
        })
        .collect()
}

/// `|⋃ sets[i+1-width ..= i]|` for every `i` (windows near the start are shorter).
///
/// Van Herk / Gil-Werman blocking: each window is the union of a suffix of one
/// block of `width` sets and a prefix of the next, so every output costs two
/// unions instead of `width`, and only one block of suffixes is held at a time.
pub fn sliding_union_len(sets: &[&RoaringBitmap], width: usize) -> Vec<u64> {
    assert!(width > 0, "a window holds at least one set");
    let mut out = vec![0; sets.len()];
    let mut previous_suffixes: Vec<RoaringBitmap> = Vec::new();
    for block_start in (0..sets.len()).step_by(width) {
        let block_end = (block_start + width).min(sets.len());
        let mut prefix = RoaringBitmap::new();
        for i in block_start..block_end {
            prefix |= sets[i];
            let offset = i - block_start;
            out[i] = if block_start == 0 || offset + 1 == width {
                prefix.len()
            } else {
                previous_suffixes[offset + 1].union_len(&prefix)
            };
        }
        if block_end - block_start == width {
            previous_suffixes = vec![RoaringBitmap::new(); width];
            let mut suffix = RoaringBitmap::new();
            for k in (0..width).rev() {
                suffix |= sets[block_start + k];
                previous_suffixes[k] = suffix.clone();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sliding_unions_match_direct_unions(
            sets in prop::collection::vec(prop::collection::btree_set(0u32..200, 0..30), 0..70),
            width in 1usize..35,
        ) {
            let bitmaps: Vec<RoaringBitmap> = sets.iter().map(|s| s.iter().copied().collect()).collect();
            let refs: Vec<&RoaringBitmap> = bitmaps.iter().collect();
            let fast = sliding_union_len(&refs, width);
            for i in 0..refs.len() {
                let start = (i + 1).saturating_sub(width);
                let mut direct = RoaringBitmap::new();
                for set in &refs[start..=i] { direct |= *set; }
                prop_assert_eq!(fast[i], direct.len(), "window ending at {}", i);
            }
        }
    }
}
