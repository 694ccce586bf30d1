//! Identifiers that can only be built by parsing, so a value in hand is always valid.

use crate::FieldError;
use std::fmt;

/// Counts characters, not bytes: WeChat and our own limits are in characters,
/// and a Chinese character is three bytes in UTF-8.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn check_length(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let len = char_len(value);
    if len == 0 || len > max {
        return Err(FieldError::new(
            "invalid_length",
            field,
            format!("must be 1 to {max} characters, got {len}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            "invalid_characters",
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! bounded_text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
                let value = value.into();
                check_length($field, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text_id!(
    /// The app's own identifier for one of its users (1–128 characters).
    UserId,
    "user_id",
    128
);
bounded_text_id!(
    /// The sender's identifier for one event, used to drop replays (1–128 characters).
    EventId,
    "id",
    128
);
bounded_text_id!(
    /// A WeChat openid or unionid as the app reports it (1–128 characters).
    WechatId,
    "openid",
    128
);

/// An event name: 1–64 characters of `[a-z0-9_.$]`.
///
/// The `$` prefix is reserved by convention for events huiliu records itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
        let value = value.into();
        let len = value.len(); // the alphabet is ASCII, so bytes == characters when valid
        if len == 0 || len > Self::MAX_CHARS {
            return Err(FieldError::new(
                "invalid_length",
                "name",
                format!(
                    "must be 1 to {} characters, got {}",
                    Self::MAX_CHARS,
                    char_len(&value)
                ),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '$'))
        {
            return Err(FieldError::new(
                "invalid_characters",
                "name",
                format!("may only use a-z, 0-9, '_', '.' and '$'; found {bad:?}"),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an app's dense `u32` user indexes start: every activity bitmap keys on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserIndex(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_limit_counts_characters_not_bytes() {
        let chinese = "用".repeat(128); // 384 bytes
        assert!(UserId::parse(chinese).is_ok());
        let err = UserId::parse("用".repeat(129)).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("user_id"));
        assert_eq!(err.code, "invalid_length");
    }

    #[test]
    fn empty_and_control_characters_are_rejected() {
        assert!(UserId::parse("").is_err());
        assert_eq!(
            EventId::parse("a\nb").unwrap_err().code,
            "invalid_characters"
        );
    }

    #[test]
    fn event_name_alphabet_is_enforced() {
        assert!(EventName::parse("order_paid").is_ok());
        assert!(EventName::parse("$launch.v2").is_ok());
        assert_eq!(
            EventName::parse("OrderPaid").unwrap_err().code,
            "invalid_characters"
        );
        assert!(EventName::parse("a".repeat(64)).is_ok());
        assert_eq!(
            EventName::parse("a".repeat(65)).unwrap_err().code,
            "invalid_length"
        );
        assert!(EventName::parse("下单").is_err());
    }
}
