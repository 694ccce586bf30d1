//! Subscription credits: what a user's answer to a subscription prompt allows.
//!
//! A one-time template accepted N times allows N sends (WeChat documents one send
//! per acceptance, with no expiry; stacking is what the community reports, and a
//! 43101 answer corrects the count). A long-term template accepted once allows
//! sends until the user unsubscribes. Rejections and bans grant nothing but are
//! remembered; `filter` (WeChat dropped a duplicate-title template) is ignored.

use crate::templates::TemplateKind;
use crate::FieldError;
use serde::{Deserialize, Serialize};

/// A user's answer for one template, as `wx.requestSubscribeMessage` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeResult {
    Accept,
    Reject,
    Ban,
    Filter,
}

impl SubscribeResult {
    /// `accept`, `acceptWithAudio` and `acceptWithAlert` are acceptances.
    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        match text {
            "accept" | "acceptWithAudio" | "acceptWithAlert" => Ok(Self::Accept),
            "reject" => Ok(Self::Reject),
            "ban" => Ok(Self::Ban),
            "filter" => Ok(Self::Filter),
            other => Err(FieldError::new(
                "invalid_result",
                field,
                format!("{other:?} is not one of accept, reject, ban, filter"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Ban => "ban",
            Self::Filter => "filter",
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    /// The company's backend relayed `wx.requestSubscribeMessage`'s result.
    ClientReport,
    /// WeChat pushed `subscribe_msg_popup_event` for the same prompt.
    PopupEvent,
    /// WeChat pushed `subscribe_msg_change_event`: the user changed the template in
    /// the mini-program's settings.
    SettingsChange,
}

/// How long after one path reports an acceptance the other path's report of it
/// is recognised as the same acceptance.
pub const PAIRING_WINDOW_SECONDS: i64 = 600;

impl AnswerSource {
    /// The credit history's cause for an answer from here.
    pub fn cause(self) -> &'static str {
        match self {
            Self::ClientReport => "client_report",
            Self::PopupEvent => "wechat_popup",
            Self::SettingsChange => "wechat_settings_change",
        }
    }

    /// A prompt's acceptance arrives twice when a company uses both paths: from
    /// its backend and from WeChat's push. An acceptance from here is the same as
    /// an unpaired one the other path reported within [`PAIRING_WINDOW_SECONDS`].
    pub fn pairs_with(self) -> Option<Self> {
        match self {
            Self::ClientReport => Some(Self::PopupEvent),
            Self::PopupEvent => Some(Self::ClientReport),
            Self::SettingsChange => None,
        }
    }
}

/// What huiliu knows about one user and one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Subscription {
    /// One-time sends still allowed.
    pub credits: u32,
    /// A standing long-term permission.
    pub long_term: bool,
    /// The user's latest answer (`None` before any).
    pub status: Option<SubscribeResult>,
}

/// One change to a subscription, for the credit history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditChange {
    pub delta: i64,
    pub after: Subscription,
}

impl Subscription {
    /// Applies an answer from `source`; `None` when it changes nothing. A rejection
    /// in the settings also ends the one-time credits: WeChat will refuse those
    /// sends (43101) until the user subscribes again.
    pub fn record_from(
        &self,
        kind: TemplateKind,
        result: SubscribeResult,
        source: AnswerSource,
    ) -> Option<CreditChange> {
        let mut change = self.record(kind, result)?;
        if source == AnswerSource::SettingsChange
            && matches!(result, SubscribeResult::Reject | SubscribeResult::Ban)
        {
            change.delta = -i64::from(self.credits);
            change.after.credits = 0;
        }
        Some(change)
    }

    /// The same acceptance reported a second time (the other path): the answer is
    /// recorded, no credit added.
    pub fn record_again(&self, result: SubscribeResult) -> CreditChange {
        CreditChange {
            delta: 0,
            after: Subscription {
                status: Some(result),
                ..*self
            },
        }
    }

    /// Applies an answer from a prompt; `None` when it changes nothing (a `filter`,
    /// or the same answer again for a long-term template).
    pub fn record(&self, kind: TemplateKind, result: SubscribeResult) -> Option<CreditChange> {
        let mut after = *self;
        let mut delta = 0;
        match result {
            SubscribeResult::Filter => return None,
            SubscribeResult::Accept => match kind {
                TemplateKind::OneTime => {
                    after.credits = after.credits.saturating_add(1);
                    delta = 1;
                }
                TemplateKind::LongTerm => after.long_term = true,
            },
            // A one-time credit already granted stays: it was given for an earlier
            // acceptance. A long-term permission ends.
            SubscribeResult::Reject | SubscribeResult::Ban => {
                if kind == TemplateKind::LongTerm {
                    after.long_term = false;
                }
            }
        }
        after.status = Some(result);
        (after != *self).then_some(CreditChange { delta, after })
    }

    /// Whether a message may be sent now.
    pub fn allows_send(&self) -> bool {
        self.status != Some(SubscribeResult::Ban) && (self.long_term || self.credits > 0)
    }
}

/// A stable hash of a subscription report (user and answers, in template order),
/// to tell a replay from a different request under the same idempotency key.
pub fn report_hash(user_id: &str, answers: &[(String, SubscribeResult)]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(user_id.as_bytes());
    for (template_id, result) in answers {
        hasher.update([0]);
        hasher.update(template_id.as_bytes());
        hasher.update([0]);
        hasher.update(result.as_str().as_bytes());
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use SubscribeResult::*;

    #[test]
    fn one_time_acceptances_stack_and_answers_are_remembered() {
        let s = Subscription::default();
        let s = s.record(TemplateKind::OneTime, Accept).unwrap().after;
        let change = s.record(TemplateKind::OneTime, Accept).unwrap();
        assert_eq!((change.delta, change.after.credits), (1, 2));
        let rejected = change.after.record(TemplateKind::OneTime, Reject).unwrap();
        assert_eq!(
            (
                rejected.delta,
                rejected.after.credits,
                rejected.after.status
            ),
            (0, 2, Some(Reject))
        );
        assert!(rejected.after.allows_send(), "earlier credits stay");
        assert_eq!(rejected.after.record(TemplateKind::OneTime, Filter), None);
        let banned = rejected
            .after
            .record(TemplateKind::OneTime, Ban)
            .unwrap()
            .after;
        assert!(!banned.allows_send());
    }

    #[test]
    fn long_term_permission_is_granted_once_and_ends_on_reject() {
        let s = Subscription::default()
            .record(TemplateKind::LongTerm, Accept)
            .unwrap()
            .after;
        assert!(s.long_term && s.allows_send() && s.credits == 0);
        assert_eq!(
            s.record(TemplateKind::LongTerm, Accept),
            None,
            "nothing new"
        );
        let off = s.record(TemplateKind::LongTerm, Reject).unwrap().after;
        assert!(!off.long_term && !off.allows_send());
    }

    #[test]
    fn a_rejection_in_the_settings_ends_one_time_credits() {
        let s = Subscription {
            credits: 3,
            ..Default::default()
        };
        let change = s
            .record_from(TemplateKind::OneTime, Reject, AnswerSource::SettingsChange)
            .unwrap();
        assert_eq!((change.delta, change.after.credits), (-3, 0));
        let prompt = s
            .record_from(TemplateKind::OneTime, Reject, AnswerSource::PopupEvent)
            .unwrap();
        assert_eq!(
            prompt.after.credits, 3,
            "declining a prompt keeps earlier credits"
        );
        assert_eq!(s.record_again(Accept).after.credits, 3);
        assert_eq!(
            AnswerSource::ClientReport.pairs_with(),
            Some(AnswerSource::PopupEvent)
        );
        assert_eq!(AnswerSource::SettingsChange.pairs_with(), None);
    }

    #[test]
    fn results_parse_with_wechat_spellings() {
        assert_eq!(
            SubscribeResult::parse("acceptWithAudio", "r").unwrap(),
            Accept
        );
        assert_eq!(
            SubscribeResult::parse("maybe", "results.t1")
                .unwrap_err()
                .field
                .as_deref(),
            Some("results.t1")
        );
    }

    proptest! {
        /// Credits equal the number of one-time acceptances, whatever else is said.
        #[test]
        fn credits_count_acceptances(answers in prop::collection::vec(0u8..4, 0..60)) {
            let mut s = Subscription::default();
            let mut history = 0i64;
            for a in &answers {
                let result = [Accept, Reject, Ban, Filter][*a as usize];
                if let Some(change) = s.record(TemplateKind::OneTime, result) {
                    history += change.delta;
                    s = change.after;
                }
            }
            let accepted = answers.iter().filter(|a| **a == 0).count() as u32;
            prop_assert_eq!(s.credits, accepted);
            prop_assert_eq!(history, i64::from(accepted), "the history adds up to the balance");
        }
    }
}
