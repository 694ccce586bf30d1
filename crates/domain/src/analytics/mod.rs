//! Measure: the activity index and the reports read from it (active users,
//! cohort retention, lifecycle, one-and-done) plus funnels over raw events.
//! Every day boundary is a local day in the app's time zone.

pub mod active;
pub mod day;
pub mod funnel;
pub mod headline;
pub mod index;
pub mod lifecycle;
pub mod one_and_done;
#[cfg(test)]
mod proptests;
pub mod range;
pub mod retention;
pub mod settings;

pub use day::LocalDay;
pub use index::{
    merge_packed, merge_rows, open_stored, pack_rows, resolve_first_active, unpack_rows,
    ActivityDelta, ActivityIndex, BitmapKind, DayBitmap, DeltaBuilder, PACKED_ROWS_KIND,
};
pub use range::{DayRange, Period};
pub use settings::AnalyticsSettings;
