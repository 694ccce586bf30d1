//! A user's points as lots: the rules of the points ledger, without storage.
//!
//! Each earn is a lot with its own expiry (and, while pending, a vesting time);
//! a spend or a hold takes points from the live lots that expire soonest (lots
//! without expiry last, older lots first among equals) and records which lots it
//! used, so that a reversal or a released hold puts exactly those points back.
//! Expired lots stop counting at their expiry instant; [`Points::expire`] turns
//! what they still held into expiry entries. A reversal of an earn takes back
//! what is left of its lot; what was already spent is the shortfall, which
//! becomes debt or is only recorded, as the app's policy says.
//!
//! Everything is in whole points (`i64`); time is microseconds since the epoch.

pub mod ledger;

use std::collections::BTreeMap;

/// One earn's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    /// The earn entry that created it.
    pub id: u64,
    pub amount: i64,
    /// Points still in it (not spent, held, expired or reversed).
    pub remaining: i64,
    pub expires_us: Option<i64>,
    /// A pending earn vests at this time (the refund window); until then it is
    /// not spendable. `None`: vested at once.
    pub vests_us: Option<i64>,
    /// A pending earn that was voided before vesting, or an earn reversed.
    pub voided: bool,
    /// Points that expired out of it (a clawback does not count them as spent).
    pub expired: i64,
}

impl Lot {
    /// A fresh, vested lot of `amount` points.
    pub fn new(id: u64, amount: i64, expires_us: Option<i64>) -> Self {
        Self {
            id,
            amount,
            remaining: amount,
            expires_us,
            vests_us: None,
            voided: false,
            expired: 0,
        }
    }

    fn live(&self, now_us: i64) -> bool {
        !self.voided
            && self.vests_us.is_none_or(|v| v <= now_us)
            && self.expires_us.is_none_or(|e| e > now_us)
    }

    fn pending(&self, now_us: i64) -> bool {
        !self.voided && self.vests_us.is_some_and(|v| v > now_us)
    }
}

/// Points taken from lots: lot id → points.
pub type Allocation = BTreeMap<u64, i64>;

/// What to do when a reversal takes back more than is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortfallPolicy {
    /// The balance may go negative (the user owes points).
    AllowDebt,
    /// Take what is left; record the rest as shortfall.
    Cap,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("not enough points: {available} available")]
    Insufficient { available: i64 },
    #[error("the amount must be positive")]
    NotPositive,
    #[error("no such lot or hold")]
    Unknown,
    #[error("already settled")]
    Settled,
}

/// A reservation for a redemption: points taken from lots, to be captured
/// (spent) or released (returned to the same lots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: u64,
    pub taken: Allocation,
    /// When an unsettled hold is released by itself.
    pub times_out_us: i64,
}

/// A user's points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Points {
    pub lots: BTreeMap<u64, Lot>,
    pub holds: BTreeMap<u64, Hold>,
    /// Points owed after reversals beyond the balance (policy `AllowDebt`).
    pub debt: i64,
}

impl Points {
    /// Spendable now: the live lots' points, less debt.
    pub fn balance(&self, now_us: i64) -> i64 {
        self.lots
            .values()
            .filter(|l| l.live(now_us))
            .map(|l| l.remaining)
            .sum::<i64>()
            - self.debt
    }

    /// Earned but not vested yet.
    pub fn pending(&self, now_us: i64) -> i64 {
        self.lots
            .values()
            .filter(|l| l.pending(now_us))
            .map(|l| l.remaining)
            .sum()
    }

    /// Reserved by unsettled holds.
    pub fn on_hold(&self) -> i64 {
        self.holds.values().flat_map(|h| h.taken.values()).sum()
    }

    /// Points that expire in `[now, until)`.
    pub fn expiring(&self, now_us: i64, until_us: i64) -> i64 {
        self.lots
            .values()
            .filter(|l| l.live(now_us) && l.expires_us.is_some_and(|e| e < until_us))
            .map(|l| l.remaining)
            .sum()
    }

    pub fn earn(&mut self, lot: Lot) -> Result<(), PointsError> {
        if lot.amount <= 0 || lot.remaining != lot.amount {
            return Err(PointsError::NotPositive);
        }
        // New points pay off debt first.
        let mut lot = lot;
        let repaid = lot.remaining.min(self.debt);
        lot.remaining -= repaid;
        self.debt -= repaid;
        self.lots.insert(lot.id, lot);
        Ok(())
    }

    /// Takes `amount` from the live lots that expire soonest.
    fn take(&mut self, amount: i64, now_us: i64) -> Result<Allocation, PointsError> {
        if amount <= 0 {
            return Err(PointsError::NotPositive);
        }
        let available = self.balance(now_us);
        if amount > available {
            return Err(PointsError::Insufficient {
                available: available.max(0),
            });
        }
        let mut order: Vec<&mut Lot> = self
            .lots
            .values_mut()
            .filter(|l| l.live(now_us) && l.remaining > 0)
            .collect();
        order.sort_by_key(|l| (l.expires_us.unwrap_or(i64::MAX), l.id));
        let mut left = amount;
        let mut taken = Allocation::new();
        for lot in order {
            if left == 0 {
                break;
            }
            let part = lot.remaining.min(left);
            lot.remaining -= part;
            left -= part;
            taken.insert(lot.id, part);
        }
        debug_assert_eq!(left, 0, "the balance check guarantees enough live points");
        Ok(taken)
    }

    /// Spends `amount`; the allocation says which lots paid.
    pub fn spend(&mut self, amount: i64, now_us: i64) -> Result<Allocation, PointsError> {
        self.take(amount, now_us)
    }

    /// Reserves `amount` for a redemption until `times_out_us`.
    pub fn hold(
        &mut self,
        id: u64,
        amount: i64,
        now_us: i64,
        times_out_us: i64,
    ) -> Result<(), PointsError> {
        let taken = self.take(amount, now_us)?;
        self.holds.insert(
            id,
            Hold {
                id,
                taken,
                times_out_us,
            },
        );
        Ok(())
    }

    /// Spends a hold's points for good.
    pub fn capture(&mut self, id: u64) -> Result<Allocation, PointsError> {
        self.holds
            .remove(&id)
            .map(|h| h.taken)
            .ok_or(PointsError::Unknown)
    }

    /// Returns a hold's points to the lots they came from (see [`Points::reverse_spend`]);
    /// the points that came back.
    pub fn release(&mut self, id: u64) -> Result<i64, PointsError> {
        let hold = self.holds.remove(&id).ok_or(PointsError::Unknown)?;
        Ok(self.restore(&hold.taken))
    }

    /// Holds whose time ran out at `now_us`, released: (hold, points back).
    pub fn release_timed_out(&mut self, now_us: i64) -> Vec<(u64, i64)> {
        let due: Vec<u64> = self
            .holds
            .values()
            .filter(|h| h.times_out_us <= now_us)
            .map(|h| h.id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.release(id).ok().map(|a| (id, a)))
            .collect()
    }

    /// Puts points back into the lots they came from. Points of a lot that
    /// expired meanwhile go back expired (the expiry job takes them); points of a
    /// lot that was reversed pay off debt, or are gone. The points that came back.
    fn restore(&mut self, taken: &Allocation) -> i64 {
        let mut back = 0;
        for (lot_id, points) in taken {
            match self.lots.get_mut(lot_id) {
                Some(lot) if !lot.voided => {
                    lot.remaining += points;
                    back += points;
                }
                _ => {
                    let repaid = (*points).min(self.debt);
                    self.debt -= repaid;
                    back += repaid;
                }
            }
        }
        back
    }

    /// Undoes a spend exactly: its points go back to the lots that paid (see
    /// [`Points::restore`]); the points that came back.
    pub fn reverse_spend(&mut self, taken: &Allocation) -> i64 {
        self.restore(taken)
    }

    /// Voids a pending earn before it vests.
    pub fn void(&mut self, lot_id: u64, now_us: i64) -> Result<i64, PointsError> {
        let lot = self.lots.get_mut(&lot_id).ok_or(PointsError::Unknown)?;
        if !lot.pending(now_us) {
            return Err(PointsError::Settled);
        }
        lot.voided = true;
        Ok(std::mem::take(&mut lot.remaining))
    }

    /// Takes an earn back (clawback): what is left of its lot, and the part
    /// already spent as debt or as recorded shortfall. Returns (taken, shortfall).
    pub fn reverse_earn(
        &mut self,
        lot_id: u64,
        policy: ShortfallPolicy,
    ) -> Result<(i64, i64), PointsError> {
        let lot = self.lots.get_mut(&lot_id).ok_or(PointsError::Unknown)?;
        if lot.voided {
            return Err(PointsError::Settled);
        }
        let taken = std::mem::take(&mut lot.remaining);
        // What was spent (or is held) is short; what expired is gone anyway.
        let shortfall = lot.amount - taken - lot.expired;
        lot.voided = true;
        match policy {
            ShortfallPolicy::AllowDebt => {
                self.debt += shortfall;
                Ok((taken + shortfall, 0))
            }
            ShortfallPolicy::Cap => Ok((taken, shortfall)),
        }
    }

    /// Expiry entries due at `now_us`: each expired lot's remaining points, by lot.
    pub fn expire(&mut self, now_us: i64) -> Vec<(u64, i64)> {
        let mut expired = Vec::new();
        for lot in self.lots.values_mut() {
            if !lot.voided && lot.expires_us.is_some_and(|e| e <= now_us) && lot.remaining > 0 {
                let points = std::mem::take(&mut lot.remaining);
                lot.expired += points;
                expired.push((lot.id, points));
            }
        }
        expired
    }
}

/// When an app's earned points expire by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExpiryPolicy {
    /// Points never expire.
    Never,
    /// At the end of the `days`-th local day after the earn (the earn's own day
    /// is day 0): `{"kind": "days", "days": 365}`.
    Days { days: u16 },
    /// At the end of the local month of the earn.
    EndOfMonth,
    /// At the end of the local year of the earn (the common 积分 rule: points
    /// earned this year expire on December 31 at midnight).
    EndOfYear,
}

impl ExpiryPolicy {
    /// The expiry instant of points earned at `earned`, in the app's zone.
    pub fn expires_at(
        self,
        earned: jiff::Timestamp,
        zone: &crate::time::AppTimeZone,
    ) -> Option<jiff::Timestamp> {
        let day = earned.to_zoned(zone.zone().clone()).date();
        let end = match self {
            Self::Never => return None,
            Self::Days { days } => day
                .checked_add(jiff::Span::new().days(i64::from(days) + 1))
                .ok()?,
            Self::EndOfMonth => day
                .first_of_month()
                .checked_add(jiff::Span::new().months(1))
                .ok()?,
            Self::EndOfYear => jiff::civil::date(day.year() + 1, 1, 1),
        };
        // Midnight that starts the next day, in the zone (the first instant of
        // that day where a DST change skips midnight).
        end.to_zoned(zone.zone().clone())
            .ok()
            .map(|z| z.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000_000;

    fn lot(id: u64, amount: i64, expires_us: Option<i64>) -> Lot {
        Lot::new(id, amount, expires_us)
    }

    #[test]
    fn spends_take_the_soonest_expiring_points_first() {
        let mut p = Points::default();
        p.earn(lot(1, 100, None)).unwrap();
        p.earn(lot(2, 50, Some(30 * DAY))).unwrap();
        p.earn(lot(3, 30, Some(10 * DAY))).unwrap();
        let taken = p.spend(60, 0).unwrap();
        assert_eq!(taken, Allocation::from([(3, 30), (2, 30)]));
        assert_eq!(p.balance(0), 120);
        assert_eq!(p.expiring(0, 31 * DAY), 20);
        assert_eq!(
            p.spend(121, 0),
            Err(PointsError::Insufficient { available: 120 })
        );
        assert_eq!(p.spend(0, 0), Err(PointsError::NotPositive));
        // At the expiry instant the lot stops counting; the job writes the entry.
        assert_eq!(p.balance(30 * DAY), 100);
        assert_eq!(p.expire(30 * DAY), vec![(2, 20)]);
        // A refund after both lots expired: the points come back expired, and
        // the next expiry run takes them.
        assert_eq!(p.reverse_spend(&taken), 60);
        assert_eq!(p.balance(30 * DAY), 100);
        assert_eq!(p.expire(30 * DAY), vec![(2, 30), (3, 30)]);
    }

    #[test]
    fn holds_reserve_and_release_to_the_same_lots() {
        let mut p = Points::default();
        p.earn(lot(1, 100, Some(10 * DAY))).unwrap();
        p.hold(7, 80, 0, DAY).unwrap();
        assert_eq!((p.balance(0), p.on_hold()), (20, 80));
        assert_eq!(
            p.spend(30, 0),
            Err(PointsError::Insufficient { available: 20 })
        );
        assert_eq!(p.release_timed_out(DAY - 1), vec![]);
        assert_eq!(p.release_timed_out(DAY), vec![(7, 80)]);
        assert_eq!((p.balance(DAY), p.on_hold()), (100, 0));
        p.hold(8, 50, DAY, 2 * DAY).unwrap();
        assert_eq!(p.capture(8).unwrap(), Allocation::from([(1, 50)]));
        assert_eq!(p.capture(8), Err(PointsError::Unknown), "captured once");
        assert_eq!(p.balance(DAY), 50);
    }

    #[test]
    fn pending_earns_vest_or_are_voided() {
        let mut p = Points::default();
        p.earn(Lot {
            vests_us: Some(7 * DAY),
            ..lot(1, 40, None)
        })
        .unwrap();
        assert_eq!((p.balance(0), p.pending(0)), (0, 40));
        assert_eq!((p.balance(7 * DAY), p.pending(7 * DAY)), (40, 0));
        let mut q = p.clone();
        assert_eq!(q.void(1, DAY), Ok(40));
        assert_eq!(q.balance(7 * DAY), 0);
        assert_eq!(p.void(1, 7 * DAY), Err(PointsError::Settled));
    }

    #[test]
    fn clawback_beyond_the_balance_follows_the_policy() {
        let mut p = Points::default();
        p.earn(lot(1, 100, None)).unwrap();
        p.spend(70, 0).unwrap();
        let mut capped = p.clone();
        assert_eq!(capped.reverse_earn(1, ShortfallPolicy::Cap), Ok((30, 70)));
        assert_eq!(capped.balance(0), 0);
        assert_eq!(p.reverse_earn(1, ShortfallPolicy::AllowDebt), Ok((100, 0)));
        assert_eq!(p.balance(0), -70);
        // New points pay the debt first.
        p.earn(lot(2, 50, None)).unwrap();
        assert_eq!((p.balance(0), p.debt), (-20, 20));
        assert_eq!(
            p.reverse_earn(1, ShortfallPolicy::Cap),
            Err(PointsError::Settled)
        );
    }

    #[test]
    fn expiry_policies_end_at_local_midnight() {
        use crate::time::AppTimeZone;
        let shanghai = AppTimeZone::parse("Asia/Shanghai").unwrap();
        // 2026-12-31 23:30 in Shanghai is 15:30 UTC.
        let earned: jiff::Timestamp = "2026-12-31T15:30:00Z".parse().unwrap();
        let at = |p: ExpiryPolicy| p.expires_at(earned, &shanghai).map(|t| t.to_string());
        assert_eq!(at(ExpiryPolicy::Never), None);
        assert_eq!(
            at(ExpiryPolicy::EndOfYear).as_deref(),
            Some("2026-12-31T16:00:00Z"),
            "2027-01-01 00:00 +08"
        );
        assert_eq!(
            at(ExpiryPolicy::EndOfMonth).as_deref(),
            Some("2026-12-31T16:00:00Z")
        );
        assert_eq!(
            at(ExpiryPolicy::Days { days: 0 }).as_deref(),
            Some("2026-12-31T16:00:00Z")
        );
        assert_eq!(
            at(ExpiryPolicy::Days { days: 30 }).as_deref(),
            Some("2027-01-30T16:00:00Z")
        );
        // The same instant is still 2026-12-31 in Los Angeles, and DST is respected.
        let la = AppTimeZone::parse("America/Los_Angeles").unwrap();
        let march: jiff::Timestamp = "2026-03-07T20:00:00Z".parse().unwrap();
        assert_eq!(
            ExpiryPolicy::Days { days: 1 }
                .expires_at(march, &la)
                .unwrap()
                .to_string(),
            "2026-03-09T07:00:00Z",
            "midnight after the spring-forward day is 00:00 PDT (UTC-7)"
        );
        let policy: ExpiryPolicy =
            serde_json::from_str(r#"{"kind": "days", "days": 365}"#).unwrap();
        assert_eq!(policy, ExpiryPolicy::Days { days: 365 });
    }

    #[derive(Debug, Clone)]
    enum Op {
        Earn(i64, Option<u8>),
        Spend(i64),
        Hold(i64),
        Capture,
        Release,
        ReverseSpend,
        Clawback(bool),
        Tick(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..500, proptest::option::of(0u8..20)).prop_map(|(a, e)| Op::Earn(a, e)),
            (1i64..400).prop_map(Op::Spend),
            (1i64..300).prop_map(Op::Hold),
            Just(Op::Capture),
            Just(Op::Release),
            Just(Op::ReverseSpend),
            any::<bool>().prop_map(Op::Clawback),
            (0u8..5).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever happens, the books balance: the sum of the entries (earns,
        /// spends, holds taken and released, expiries, reversals) equals the
        /// balance (held points are out of it until released); the balance is
        /// never negative without debt; no lot holds more than it was given.
        #[test]
        fn entries_always_add_up_to_the_balance(ops in proptest::collection::vec(op(), 0..80)) {
            let mut p = Points::default();
            let mut entries = 0i64; // Σ of ledger entries, holds counted when taken
            let mut now = 0i64;
            let mut next = 1u64;
            let mut spends: Vec<Allocation> = Vec::new();
            for op in ops {
                match op {
                    Op::Earn(amount, expiry) => {
                        let expires_us = expiry.map(|d| now + i64::from(d) * DAY);
                        p.earn(lot(next, amount, expires_us)).unwrap();
                        entries += amount;
                        next += 1;
                    }
                    Op::Spend(amount) => {
                        if let Ok(taken) = p.spend(amount, now) {
                            entries -= amount;
                            prop_assert_eq!(taken.values().sum::<i64>(), amount);
                            spends.push(taken);
                        }
                    }
                    Op::Hold(amount) => {
                        if p.hold(next, amount, now, now + DAY).is_ok() {
                            entries -= amount;
                        }
                        next += 1;
                    }
                    Op::Capture => {
                        if let Some(id) = p.holds.keys().next().copied() {
                            p.capture(id).unwrap();
                        }
                    }
                    Op::Release => {
                        if let Some(id) = p.holds.keys().next().copied() {
                            entries += p.release(id).unwrap();
                        }
                    }
                    Op::ReverseSpend => {
                        if let Some(taken) = spends.pop() {
                            entries += p.reverse_spend(&taken);
                        }
                    }
                    Op::Clawback(debt) => {
                        if let Some(id) = p.lots.keys().next().copied() {
                            let policy = if debt { ShortfallPolicy::AllowDebt } else { ShortfallPolicy::Cap };
                            if let Ok((taken, _)) = p.reverse_earn(id, policy) {
                                entries -= taken;
                            }
                        }
                    }
                    Op::Tick(days) => {
                        now += i64::from(days) * DAY;
                        for (_, back) in p.release_timed_out(now) {
                            entries += back;
                        }
                        for (_, points) in p.expire(now) {
                            entries -= points;
                        }
                    }
                }
                // Expired-but-not-yet-expired-by-the-job points are still in the
                // entries; count them the way the daily job will.
                let unexpired: i64 = p.lots.values()
                    .filter(|l| !l.voided && l.expires_us.is_some_and(|e| e <= now))
                    .map(|l| l.remaining)
                    .sum();
                prop_assert_eq!(entries - unexpired, p.balance(now));
                if p.debt == 0 {
                    prop_assert!(p.balance(now) >= 0, "never negative without debt");
                }
                prop_assert!(p.lots.values().all(|l| l.remaining >= 0 && l.remaining <= l.amount));
            }
        }
    }
}
