//! One local day in the app's time zone, as UTC instants.
//!
//! A local day is not always 24 hours: on a daylight-saving change it is 23 or
//! 25, and a few zones have shifted at midnight. Each local hour's span is
//! computed once per day through jiff, so sampling a time is a table lookup
//! and every sampled instant falls inside its local day by construction.

use crate::rng::Rng;
use crate::SimError;
use jiff::civil::Date;
use jiff::tz::TimeZone;

const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

/// Instants of one local day and a sampler for the daily rhythm.
#[derive(Debug, Clone)]
pub(crate) struct DayClock {
    /// First instant of the day, UTC microseconds.
    pub(crate) start: i64,
    /// First instant of the next day: the day is `[start, end)`.
    pub(crate) end: i64,
    /// `hours[h]` is the first instant of local hour `h`; `hours[24] == end`.
    /// An hour skipped by a spring-forward change has zero length; an hour
    /// repeated by a fall-back change is two hours long.
    hours: [i64; 25],
    /// Cumulative rhythm weight per hour, scaled by the hour's real length.
    cumulative: [f64; 24],
}

fn first_instant(date: Date, tz: &TimeZone) -> Result<i64, SimError> {
    let zoned = date
        .to_zoned(tz.clone())
        .and_then(|z| z.start_of_day())
        .map_err(|e| SimError::Config(format!("no local midnight for {date}: {e}")))?;
    Ok(zoned.timestamp().as_microsecond())
}

impl DayClock {
    pub(crate) fn new(date: Date, tz: &TimeZone, hourly: &[f64; 24]) -> Result<DayClock, SimError> {
        let start = first_instant(date, tz)?;
        let next = date
            .tomorrow()
            .map_err(|e| SimError::Config(format!("no day after {date}: {e}")))?;
        let end = first_instant(next, tz)?;
        let mut hours = [start; 25];
        hours[24] = end;
        for (h, slot) in hours.iter_mut().enumerate().take(24).skip(1) {
            // `to_zoned` resolves a skipped local time to the later instant and a
            // repeated one to the earlier, which is what makes hour spans add up.
            let instant = date
                .at(h as i8, 0, 0, 0)
                .to_zoned(tz.clone())
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(start);
            *slot = instant.clamp(start, end);
        }
        for h in 1..25 {
            hours[h] = hours[h].max(hours[h - 1]);
        }
        let mut cumulative = [0.0; 24];
        let mut total = 0.0;
        for h in 0..24 {
            total += hourly[h] * (hours[h + 1] - hours[h]) as f64 / MICROS_PER_HOUR;
            cumulative[h] = total;
        }
        if total <= 0.0 {
            // Only possible if every weighted hour was skipped: fall back to flat.
            for h in 0..24 {
                cumulative[h] = (hours[h + 1] - start) as f64;
            }
        }
        Ok(DayClock {
            start,
            end,
            hours,
            cumulative,
        })
    }

    /// A time following the daily rhythm.
    #[inline]
    pub(crate) fn sample(&self, rng: &mut Rng) -> i64 {
        let target = rng.unit() * self.cumulative[23];
        let mut h = 0;
        while h < 23 && self.cumulative[h] <= target {
            h += 1;
        }
        self.in_hour(h, rng)
    }

    /// A uniform time within local hour `h` (the hour's first instant if the
    /// hour does not exist today).
    #[inline]
    pub(crate) fn in_hour(&self, h: usize, rng: &mut Rng) -> i64 {
        let from = self.hours[h];
        let len = self.hours[h + 1] - from;
        if len <= 0 {
            return from.min(self.end - 1);
        }
        from + rng.below(len as u64) as i64
    }

    /// A time following the rhythm but no earlier than `after`: the rhythm is
    /// squeezed into what is left of the day.
    pub(crate) fn sample_after(&self, after: i64, rng: &mut Rng) -> i64 {
        let t = self.sample(rng);
        if t >= after {
            return t;
        }
        let left = (self.end - after) as f64;
        let span = (self.end - self.start) as f64;
        let mapped = after + ((t - self.start) as f64 * left / span) as i64;
        mapped.clamp(after, self.end - 1)
    }

    /// `t` moved into the day if it fell out of it.
    #[inline]
    pub(crate) fn clamp(&self, t: i64) -> i64 {
        t.clamp(self.start, self.end - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::Timestamp;

    fn flat() -> [f64; 24] {
        [1.0; 24]
    }

    fn local_date(t: i64, tz: &TimeZone) -> Date {
        Timestamp::from_microsecond(t)
            .unwrap()
            .to_zoned(tz.clone())
            .date()
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long_in_los_angeles() {
        let tz = TimeZone::get("America/Los_Angeles").unwrap();
        let hour = 3_600_000_000;
        let spring = DayClock::new(date(2026, 3, 8), &tz, &flat()).unwrap();
        assert_eq!(spring.end - spring.start, 23 * hour);
        assert_eq!(spring.hours[3] - spring.hours[2], 0, "02:00 does not exist");
        let fall = DayClock::new(date(2026, 11, 1), &tz, &flat()).unwrap();
        assert_eq!(fall.end - fall.start, 25 * hour);
        assert_eq!(
            fall.hours[2] - fall.hours[1],
            2 * hour,
            "01:00 happens twice"
        );
        let plain = DayClock::new(date(2026, 11, 2), &tz, &flat()).unwrap();
        assert_eq!(plain.end - plain.start, 24 * hour);
    }

    #[test]
    fn sampled_times_stay_in_their_local_day() {
        let mut rng = Rng::new(1, 0);
        for (zone, day) in [
            ("America/Los_Angeles", date(2026, 11, 1)),
            ("America/Los_Angeles", date(2026, 3, 8)),
            ("Asia/Shanghai", date(2026, 5, 1)),
            ("Australia/Lord_Howe", date(2026, 4, 5)),
            ("America/Santiago", date(2026, 9, 6)),
        ] {
            let tz = TimeZone::get(zone).unwrap();
            let clock = DayClock::new(day, &tz, &flat()).unwrap();
            for _ in 0..20_000 {
                let t = clock.sample(&mut rng);
                assert!(t >= clock.start && t < clock.end);
                assert_eq!(local_date(t, &tz), day, "{zone}");
                let late = clock.sample_after(clock.end - 10, &mut rng);
                assert!(late >= clock.end - 10 && late < clock.end);
            }
            assert_eq!(local_date(clock.start, &tz), day);
            assert_eq!(local_date(clock.end - 1, &tz), day);
            assert_ne!(local_date(clock.end, &tz), day);
        }
    }

    #[test]
    fn the_rhythm_shapes_the_hour_of_day() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let mut hourly = [0.0; 24];
        hourly[12] = 3.0;
        hourly[20] = 1.0;
        let clock = DayClock::new(date(2026, 6, 1), &tz, &hourly).unwrap();
        let mut rng = Rng::new(3, 0);
        let mut noon = 0;
        for _ in 0..10_000 {
            let t = clock.sample(&mut rng);
            let hour = Timestamp::from_microsecond(t)
                .unwrap()
                .to_zoned(tz.clone())
                .hour();
            assert!(hour == 12 || hour == 20, "{hour}");
            noon += usize::from(hour == 12);
        }
        assert!((7_000..8_000).contains(&noon), "{noon}");
    }
}
