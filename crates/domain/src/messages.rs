//! Subscription messages: their life cycle, what WeChat's answer to a send means
//! for the message and the user's credit, and the tracking code that ties a
//! later launch back to the message.
//!
//! A message is `queued` until a worker claims it (`sending`, one credit
//! reserved) and ends `sent`, `failed` (with WeChat's errcode or a reason),
//! `skipped` (never sent: no credit, no openid, template disabled) or `expired`
//! (still unsent when its time ran out). A send whose request may have reached
//! WeChat without an answer coming back is `unknown` inside huiliu (shown as
//! `sending`): it is never sent again; see [`Verdict::Unknown`].

use crate::credits::Subscription;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Sending,
    /// The request may have reached WeChat; waiting for evidence (a sent event).
    Unknown,
    Sent,
    Failed,
    Skipped,
    Expired,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Unknown => "unknown",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "unknown" => Self::Unknown,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// The status the API shows: an unknown outcome is still `sending` to a caller.
    pub fn public(self) -> &'static str {
        match self {
            Self::Unknown => Self::Sending.as_str(),
            other => other.as_str(),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Failed | Self::Skipped | Self::Expired
        )
    }
}

/// Why a message was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// No one-time credit left and no long-term permission.
    NoCredit,
    /// The user has no openid (set it with `PUT /v1/users/{id}`).
    NoOpenid,
    /// WeChat banned the template (43107); an operator must re-enable it.
    TemplateDisabled,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCredit => "no_credit",
            Self::NoOpenid => "no_openid",
            Self::TemplateDisabled => "template_disabled",
        }
    }
}

/// What a message may do when it is accepted or claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send, taking one one-time credit.
    SendWithCredit,
    /// Send under a long-term permission (no credit taken).
    SendLongTerm,
    Skip(SkipReason),
}

/// Decides whether a message to a user may be sent, from what huiliu knows.
pub fn admit(openid: Option<&str>, subscription: &Subscription, disabled: bool) -> Admission {
    if disabled {
        Admission::Skip(SkipReason::TemplateDisabled)
    } else if openid.is_none_or(str::is_empty) {
        Admission::Skip(SkipReason::NoOpenid)
    } else if !subscription.allows_send() {
        Admission::Skip(SkipReason::NoCredit)
    } else if subscription.long_term {
        Admission::SendLongTerm
    } else {
        Admission::SendWithCredit
    }
}

/// A message's effect on its user's one-time credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditMove {
    /// At claim: one credit leaves the available count.
    Reserve,
    /// Sent: the reserved credit is spent.
    Consume,
    /// Not sent (retry, failure, unknown outcome resolved): it is available again.
    Release,
    /// WeChat says the user has no subscription (43101): nothing is available,
    /// and a long-term permission ends.
    Zero,
}

/// One subscription's balances: available credits, reserved credits, long-term permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditBalance {
    pub credits: u32,
    pub reserved: u32,
    pub long_term: bool,
}

impl CreditMove {
    pub fn cause(self) -> &'static str {
        match self {
            Self::Reserve => "message_reserved",
            Self::Consume => "message_sent",
            Self::Release => "message_released",
            Self::Zero => "wechat_43101",
        }
    }

    /// The balance after the move, and the change to available credits. A move that
    /// finds nothing reserved (the row was changed by hand meanwhile) changes nothing
    /// reserved; available credits never go below zero.
    pub fn apply(self, before: CreditBalance) -> (CreditBalance, i64) {
        let mut after = before;
        match self {
            Self::Reserve => {
                after.credits = before.credits.saturating_sub(1);
                after.reserved = before.reserved + u32::from(before.credits > 0);
            }
            Self::Consume => after.reserved = before.reserved.saturating_sub(1),
            Self::Release => {
                after.reserved = before.reserved.saturating_sub(1);
                after.credits = before.credits + u32::from(before.reserved > 0);
            }
            Self::Zero => {
                after.reserved = before.reserved.saturating_sub(1);
                after.credits = 0;
                after.long_term = false;
            }
        }
        (after, i64::from(after.credits) - i64::from(before.credits))
    }
}

/// How a send attempt ended, as the sender saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// errcode 0, with WeChat's msgid.
    Sent { msgid: String },
    /// A non-zero errcode.
    Refused { errcode: i64, errmsg: String },
    /// The request was never written (connection refused, DNS, TLS handshake), or
    /// no token could be had: WeChat cannot have acted on it.
    NotSent { reason: String },
    /// The request was written but no answer came (timeout, connection lost).
    NoAnswer { reason: String },
}

/// What an attempt means for the message and its reserved credit.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Consume the reserved credit; the message is sent.
    Sent { msgid: String },
    /// Release the credit and try again after the delay.
    Retry { after: Duration },
    /// Fail for good. The credit goes back unless WeChat says the user has none
    /// (`zero_credits`, 43101); `disable_template` on 43107.
    Fail {
        zero_credits: bool,
        disable_template: bool,
    },
    /// Keep the credit reserved and never resend: WeChat may have sent it. The
    /// message waits for a `subscribe_msg_sent_event` naming its user and template;
    /// if none comes before the reconciliation deadline it ends `failed` with
    /// `outcome_unknown` and the credit is released (a credit WeChat did spend is
    /// then corrected by the 43101 its next send gets; a message is never sent twice).
    Unknown,
}

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After 45009 (daily quota) a send waits at least this long.
pub const QUOTA_BACKOFF: Duration = Duration::from_secs(60);

/// Exponential backoff for the `attempts`-th failed attempt (1-based).
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

/// errcodes that end a message for good: the request itself is wrong or banned
/// (40003 openid, 40037 template, 41030 page, 43101 no subscription, 43107
/// template banned, 45168 sensitive words, 47003 invalid data).
pub fn is_final_errcode(errcode: i64) -> bool {
    matches!(
        errcode,
        40003 | 40037 | 41030 | 43101 | 43107 | 45168 | 47003
    )
}

/// Judges an attempt (`attempts` counts this one).
pub fn judge(attempt: &Attempt, attempts: u32) -> Verdict {
    match attempt {
        Attempt::Sent { msgid } => Verdict::Sent {
            msgid: msgid.clone(),
        },
        Attempt::NoAnswer { .. } => Verdict::Unknown,
        Attempt::NotSent { .. } => Verdict::Retry {
            after: backoff(attempts),
        },
        Attempt::Refused { errcode, .. } if is_final_errcode(*errcode) => Verdict::Fail {
            zero_credits: *errcode == 43101,
            disable_template: *errcode == 43107,
        },
        Attempt::Refused { errcode: 45009, .. } => Verdict::Retry {
            after: backoff(attempts).max(QUOTA_BACKOFF),
        },
        // 43108 (another send to the user in flight), -1 (busy), token errors that
        // survived one refresh, and anything WeChat does not document for this call.
        Attempt::Refused { .. } => Verdict::Retry {
            after: backoff(attempts),
        },
    }
}

/// A stable hash of a request's parts, to tell a replay from a different request
/// under the same idempotency key.
pub fn request_hash(parts: &[&str]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// The query parameter that carries a message's tracking code in its page.
pub const TRACKING_PARAM: &str = "hl_t";
const TRACKING_CHARS: usize = 10;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A short tracking code (10 base-62 characters, ~59 bits) from random bits.
pub fn tracking_code(mut random: u64) -> String {
    let mut code = String::with_capacity(TRACKING_CHARS);
    for _ in 0..TRACKING_CHARS {
        code.push(ALPHABET[(random % 62) as usize] as char);
        random /= 62;
    }
    code
}

/// The page WeChat is given: the caller's page with the tracking parameter added.
/// No page, no jump (WeChat's card then opens nothing), so nothing to track.
pub fn tracked_page(page: Option<&str>, code: &str) -> Option<String> {
    let page = page?;
    let separator = if page.contains('?') { '&' } else { '?' };
    Some(format!("{page}{separator}{TRACKING_PARAM}={code}"))
}

/// The tracking code a `launch` event carries, if any: in `props.query.hl_t`
/// (the launch options' query object), in a query string (`props.query` as text or
/// `props.path` with `?…hl_t=…`), or in `props.hl_t`. Scenes 1014 and 1107 (opened
/// from a subscription message) are where it is expected; any scene counts.
pub fn tracking_code_in(event_name: &str, props: &str) -> Option<String> {
    // Cheap refusal first: this runs on every ingested event.
    if event_name != "launch" || !props.contains(TRACKING_PARAM) {
        return None;
    }
    let props: serde_json::Value = serde_json::from_str(props).ok()?;
    let from_query_string = |text: &str| {
        let query = text.split_once('?').map_or(text, |(_, q)| q);
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == TRACKING_PARAM).then(|| value.to_string())
        })
    };
    let code = match props.get("query") {
        Some(serde_json::Value::Object(query)) => query
            .get(TRACKING_PARAM)
            .and_then(|v| v.as_str())
            .map(str::to_string),
        Some(serde_json::Value::String(query)) => from_query_string(query),
        _ => None,
    }
    .or_else(|| {
        props
            .get("path")
            .and_then(|p| p.as_str())
            .and_then(from_query_string)
    })
    .or_else(|| {
        props
            .get(TRACKING_PARAM)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    })?;
    (code.len() == TRACKING_CHARS && code.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::SubscribeResult;

    fn refused(errcode: i64) -> Attempt {
        Attempt::Refused {
            errcode,
            errmsg: String::new(),
        }
    }

    #[test]
    fn admission_follows_credits_openid_and_template() {
        let none = Subscription::default();
        let one = Subscription {
            credits: 1,
            ..Default::default()
        };
        let long = Subscription {
            long_term: true,
            ..Default::default()
        };
        assert_eq!(admit(Some("o1"), &one, false), Admission::SendWithCredit);
        assert_eq!(admit(Some("o1"), &long, false), Admission::SendLongTerm);
        assert_eq!(
            admit(Some("o1"), &none, false),
            Admission::Skip(SkipReason::NoCredit)
        );
        assert_eq!(
            admit(None, &one, false),
            Admission::Skip(SkipReason::NoOpenid)
        );
        assert_eq!(
            admit(Some(""), &one, false),
            Admission::Skip(SkipReason::NoOpenid)
        );
        assert_eq!(
            admit(Some("o1"), &one, true),
            Admission::Skip(SkipReason::TemplateDisabled)
        );
        let banned = Subscription {
            credits: 2,
            status: Some(SubscribeResult::Ban),
            ..Default::default()
        };
        assert_eq!(
            admit(Some("o1"), &banned, false),
            Admission::Skip(SkipReason::NoCredit)
        );
    }

    #[test]
    fn errcodes_are_judged_as_documented() {
        for errcode in [40003, 40037, 41030, 45168, 47003] {
            assert_eq!(
                judge(&refused(errcode), 1),
                Verdict::Fail {
                    zero_credits: false,
                    disable_template: false
                },
                "{errcode}"
            );
        }
        assert_eq!(
            judge(&refused(43101), 1),
            Verdict::Fail {
                zero_credits: true,
                disable_template: false
            }
        );
        assert_eq!(
            judge(&refused(43107), 1),
            Verdict::Fail {
                zero_credits: false,
                disable_template: true
            }
        );
        for errcode in [-1, 43108, 40001] {
            assert_eq!(
                judge(&refused(errcode), 3),
                Verdict::Retry {
                    after: Duration::from_secs(4)
                }
            );
        }
        assert_eq!(
            judge(&refused(45009), 1),
            Verdict::Retry {
                after: QUOTA_BACKOFF
            }
        );
        assert_eq!(
            judge(&Attempt::NoAnswer { reason: "t".into() }, 1),
            Verdict::Unknown
        );
        assert!(matches!(
            judge(&Attempt::NotSent { reason: "c".into() }, 1),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn credit_moves_keep_available_plus_reserved_exact() {
        let start = CreditBalance {
            credits: 2,
            reserved: 0,
            long_term: false,
        };
        let (held, delta) = CreditMove::Reserve.apply(start);
        assert_eq!((held.credits, held.reserved, delta), (1, 1, -1));
        let (sent, delta) = CreditMove::Consume.apply(held);
        assert_eq!((sent.credits, sent.reserved, delta), (1, 0, 0));
        let (back, delta) = CreditMove::Release.apply(held);
        assert_eq!((back, delta), (start, 1));
        let (zero, delta) = CreditMove::Zero.apply(held);
        assert_eq!((zero.credits, zero.reserved, delta), (0, 0, -1));
        let (nothing, delta) = CreditMove::Reserve.apply(CreditBalance::default());
        assert_eq!((nothing, delta), (CreditBalance::default(), 0));
    }

    proptest::proptest! {
        /// Whatever the order of claims and outcomes, a credit is spent at most once:
        /// available + reserved + spent stays equal to what was granted.
        #[test]
        fn credits_are_conserved(granted in 0u32..5, moves in proptest::collection::vec(0u8..4, 0..40)) {
            let mut balance = CreditBalance { credits: granted, reserved: 0, long_term: false };
            let mut spent = 0u32;
            for m in moves {
                // A consume, release or zero only follows a reservation, as in the outbox.
                let mv = match m {
                    0 => CreditMove::Reserve,
                    _ if balance.reserved == 0 => continue,
                    1 => CreditMove::Consume,
                    2 => CreditMove::Release,
                    _ => continue,
                };
                let (after, _) = mv.apply(balance);
                if mv == CreditMove::Consume { spent += 1; }
                balance = after;
                proptest::prop_assert_eq!(balance.credits + balance.reserved + spent, granted);
            }
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn tracking_codes_ride_on_the_page() {
        let code = tracking_code(u64::MAX);
        assert_eq!(code.chars().count(), 10);
        assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(tracking_code(1), tracking_code(2));
        assert_eq!(
            tracked_page(Some("pages/home"), "abc").as_deref(),
            Some("pages/home?hl_t=abc")
        );
        assert_eq!(
            tracked_page(Some("pages/order?id=7"), "abc").as_deref(),
            Some("pages/order?id=7&hl_t=abc")
        );
        assert_eq!(tracked_page(None, "abc"), None);
    }

    #[test]
    fn launches_carry_tracking_codes_in_their_query() {
        let code = tracking_code(42);
        let object = format!(r#"{{"scene": 1014, "query": {{"id": "7", "hl_t": "{code}"}}}}"#);
        let text = format!(r#"{{"scene": 1107, "query": "id=7&hl_t={code}"}}"#);
        let path = format!(r#"{{"path": "pages/order?id=7&hl_t={code}"}}"#);
        let flat = format!(r#"{{"hl_t": "{code}"}}"#);
        for props in [&object, &text, &path, &flat] {
            assert_eq!(
                tracking_code_in("launch", props).as_deref(),
                Some(code.as_str()),
                "{props}"
            );
        }
        assert_eq!(
            tracking_code_in("page_view", &object),
            None,
            "only launches"
        );
        assert_eq!(tracking_code_in("launch", r#"{"scene": 1014}"#), None);
        assert_eq!(tracking_code_in("launch", r#"{"hl_t": "short"}"#), None);
        assert_eq!(tracking_code_in("launch", "not json hl_t"), None);
    }

    #[test]
    fn statuses_round_trip_and_unknown_shows_as_sending() {
        for status in [
            MessageStatus::Queued,
            MessageStatus::Sending,
            MessageStatus::Unknown,
            MessageStatus::Sent,
            MessageStatus::Failed,
            MessageStatus::Skipped,
            MessageStatus::Expired,
        ] {
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(MessageStatus::Unknown.public(), "sending");
    }
}
