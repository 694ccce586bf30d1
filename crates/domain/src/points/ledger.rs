//! One ledger operation planned against a user's loaded points: which entries
//! to append and which lots, holds and debt change. Both stores load the same
//! state, call [`plan`] and write what it says, so the rules live here once.
//!
//! Before the operation itself the plan settles what time has already decided:
//! holds past their timeout go back to their lots and expired lots' points are
//! written off, each as an entry of its own, so the books show them in the order
//! they happened even when the background sweep has not run yet.

use super::{Allocation, Hold, Lot, Points, PointsError, ShortfallPolicy};

/// The id the operation's own entry gets once stored: its new lot or hold is
/// planned under this id and renamed by the store to the entry's sequence number.
pub const NEW_ID: u64 = 0;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Points in, as a lot (pending until it vests when the earn says so).
    Earn,
    Spend,
    /// Points reserved for a redemption.
    Hold,
    /// A hold spent for good (amount 0: the hold entry already took the points).
    Capture,
    /// A hold's points back in their lots.
    Release,
    /// A pending earn cancelled before it vested.
    Void,
    /// An earlier entry undone: an earn clawed back, a spend or capture refunded.
    Reverse,
    /// An expired lot's points written off.
    Expire,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "earn",
            Self::Spend => "spend",
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::Release => "release",
            Self::Void => "void",
            Self::Reverse => "reverse",
            Self::Expire => "expire",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Earn,
            Self::Spend,
            Self::Hold,
            Self::Capture,
            Self::Release,
            Self::Void,
            Self::Reverse,
            Self::Expire,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A ledger operation on one user's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Earn {
        amount: i64,
        expires_us: Option<i64>,
        /// A pending earn: spendable from this instant (after the refund window).
        vests_us: Option<i64>,
    },
    Spend {
        amount: i64,
    },
    Hold {
        amount: i64,
        times_out_us: i64,
    },
    Capture {
        hold: u64,
    },
    Release {
        hold: u64,
    },
    /// Undo the earn that created `lot`: a void while it is pending, else a
    /// clawback under `policy`.
    ReverseEarn {
        lot: u64,
        policy: ShortfallPolicy,
    },
    /// Refund a spend or a captured hold (entry `entry`): `taken` goes back to its lots.
    ReverseSpend {
        entry: u64,
        taken: Allocation,
    },
    /// Only what time has decided (expiries, timed-out holds).
    Sweep,
}

impl Op {
    /// Lots the operation needs loaded even when nothing is left in them.
    pub fn lots_needed(&self) -> Vec<u64> {
        match self {
            Self::ReverseEarn { lot, .. } => vec![*lot],
            Self::ReverseSpend { taken, .. } => taken.keys().copied().collect(),
            _ => Vec::new(),
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub kind: EntryKind,
    /// Signed: what the entry adds to the user's points.
    pub amount: i64,
    /// The lot, hold or entry this one acts on.
    pub refers_to: Option<u64>,
    /// For spends, holds and reversals of them: points by lot.
    pub allocation: Option<Allocation>,
    /// A clawback capped by the policy: the points it could not take back.
    pub shortfall: i64,
}

/// A user's points at an instant, and until when those figures hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub balance: i64,
    pub pending: i64,
    pub on_hold: i64,
    pub debt: i64,
    /// The next instant a lot vests or expires; until then the figures stand.
    pub valid_until_us: Option<i64>,
}

impl Points {
    pub fn summary(&self, now_us: i64) -> Summary {
        let valid_until_us = self
            .lots
            .values()
            .filter(|l| !l.voided && l.remaining > 0)
            .flat_map(|l| [l.vests_us, l.expires_us])
            .flatten()
            .filter(|t| *t > now_us)
            .min();
        Summary {
            balance: self.balance(now_us),
            pending: self.pending(now_us),
            on_hold: self.on_hold(),
            debt: self.debt,
            valid_until_us,
        }
    }
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Entries in order; the operation's own entry is the last (none for a
    /// sweep with nothing to do).
    pub entries: Vec<PlannedEntry>,
    /// Existing lots whose remaining points or void mark changed.
    pub changed_lots: Vec<Lot>,
    /// The earn's new lot (id [`NEW_ID`]).
    pub new_lot: Option<Lot>,
    /// The new hold (id [`NEW_ID`]).
    pub new_hold: Option<Hold>,
    /// Holds captured or released (and so gone).
    pub settled_holds: Vec<u64>,
    pub debt: i64,
    /// The user's points after the plan, as of `now_us`.
    pub summary: Summary,
}

/// Plans `op` on `points` at `now_us`.
pub fn plan(mut points: Points, op: &Op, now_us: i64) -> Result<Plan, PointsError> {
    let lots_before = points.lots.clone();
    let holds_before: Vec<u64> = points.holds.keys().copied().collect();
    let mut entries = Vec::new();
    for (hold, back) in points.release_timed_out(now_us) {
        entries.push(PlannedEntry {
            kind: EntryKind::Release,
            amount: back,
            refers_to: Some(hold),
            allocation: None,
            shortfall: 0,
        });
    }
    for (lot, written_off) in points.expire(now_us) {
        entries.push(PlannedEntry {
            kind: EntryKind::Expire,
            amount: -written_off,
            refers_to: Some(lot),
            allocation: None,
            shortfall: 0,
        });
    }
    let own = |kind, amount, refers_to, allocation| PlannedEntry {
        kind,
        amount,
        refers_to,
        allocation,
        shortfall: 0,
    };
    let mut new_lot = None;
    let mut new_hold = None;
    match op {
        Op::Earn {
            amount,
            expires_us,
            vests_us,
        } => {
            points.earn(Lot {
                vests_us: vests_us.filter(|v| *v > now_us),
                ..Lot::new(NEW_ID, *amount, *expires_us)
            })?;
            new_lot = points.lots.remove(&NEW_ID);
            entries.push(own(EntryKind::Earn, *amount, None, None));
        }
        Op::Spend { amount } => {
            let taken = points.spend(*amount, now_us)?;
            entries.push(own(EntryKind::Spend, -amount, None, Some(taken)));
        }
        Op::Hold {
            amount,
            times_out_us,
        } => {
            points.hold(NEW_ID, *amount, now_us, *times_out_us)?;
            let hold = points.holds.remove(&NEW_ID).expect("just held");
            entries.push(own(
                EntryKind::Hold,
                -amount,
                None,
                Some(hold.taken.clone()),
            ));
            new_hold = Some(hold);
        }
        Op::Capture { hold } => {
            let taken = points.capture(*hold)?;
            entries.push(own(EntryKind::Capture, 0, Some(*hold), Some(taken)));
        }
        Op::Release { hold } => {
            let back = points.release(*hold)?;
            entries.push(own(EntryKind::Release, back, Some(*hold), None));
        }
        Op::ReverseEarn { lot, policy } => {
            let pending = points
                .lots
                .get(lot)
                .ok_or(PointsError::Unknown)?
                .pending(now_us);
            if pending {
                let voided = points.void(*lot, now_us)?;
                entries.push(own(EntryKind::Void, -voided, Some(*lot), None));
            } else {
                let (taken, shortfall) = points.reverse_earn(*lot, *policy)?;
                entries.push(PlannedEntry {
                    shortfall,
                    ..own(EntryKind::Reverse, -taken, Some(*lot), None)
                });
            }
        }
        Op::ReverseSpend { entry, taken } => {
            let back = points.reverse_spend(taken);
            entries.push(own(
                EntryKind::Reverse,
                back,
                Some(*entry),
                Some(taken.clone()),
            ));
        }
        Op::Sweep => {}
    }
    let changed_lots = points
        .lots
        .values()
        .filter(|lot| lots_before.get(&lot.id) != Some(lot))
        .cloned()
        .collect();
    let settled_holds = holds_before
        .into_iter()
        .filter(|h| !points.holds.contains_key(h))
        .collect();
    // The summary counts the new lot and hold, which the plan keeps apart.
    let mut after = points;
    if let Some(lot) = &new_lot {
        after.lots.insert(NEW_ID, lot.clone());
    }
    if let Some(hold) = &new_hold {
        after.holds.insert(NEW_ID, hold.clone());
    }
    Ok(Plan {
        entries,
        changed_lots,
        new_lot,
        new_hold,
        settled_holds,
        debt: after.debt,
        summary: after.summary(now_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn lot(id: u64, amount: i64, expires_us: Option<i64>) -> Lot {
        Lot::new(id, amount, expires_us)
    }

    #[test]
    fn a_plan_settles_time_first_then_runs_the_operation() {
        let mut p = Points::default();
        p.earn(lot(1, 100, Some(DAY))).unwrap();
        p.earn(lot(2, 50, None)).unwrap();
        p.hold(3, 40, 0, DAY / 2).unwrap(); // takes from lot 1
        let plan = plan(p, &Op::Spend { amount: 30 }, DAY).unwrap();
        let kinds: Vec<_> = plan.entries.iter().map(|e| (e.kind, e.amount)).collect();
        assert_eq!(
            kinds,
            vec![
                (EntryKind::Release, 40),
                (EntryKind::Expire, -100),
                (EntryKind::Spend, -30)
            ]
        );
        assert_eq!(plan.settled_holds, vec![3]);
        assert_eq!(plan.summary.balance, 20);
        assert_eq!(plan.entries.iter().map(|e| e.amount).sum::<i64>(), -90);
    }

    #[test]
    fn earns_and_holds_are_planned_under_the_new_id() {
        let p = Points::default();
        let earned = plan(
            p,
            &Op::Earn {
                amount: 10,
                expires_us: None,
                vests_us: Some(DAY),
            },
            0,
        )
        .unwrap();
        let lot = earned.new_lot.clone().unwrap();
        assert_eq!((lot.id, lot.vests_us), (NEW_ID, Some(DAY)));
        assert_eq!(
            (
                earned.summary.balance,
                earned.summary.pending,
                earned.summary.valid_until_us
            ),
            (0, 10, Some(DAY))
        );
        let mut p = Points::default();
        p.earn(Lot { id: 5, ..lot }).unwrap();
        let reversed = plan(
            p,
            &Op::ReverseEarn {
                lot: 5,
                policy: ShortfallPolicy::Cap,
            },
            1,
        )
        .unwrap();
        assert_eq!(reversed.entries[0].kind, EntryKind::Void, "pending: a void");
        assert_eq!(reversed.summary.pending, 0);
    }
}
