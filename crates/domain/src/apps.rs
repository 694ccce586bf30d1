//! Apps are huiliu's tenants: one mini-program each, with its own keys and time zone.

use crate::keys::{random_string, GeneratedKey, KeyKind, ID_ALPHABET};
use crate::time::AppTimeZone;
use crate::FieldError;
use rand::Rng;
use std::fmt;

/// An app's public identifier, `app_` followed by 16 lower-case letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    const PREFIX: &'static str = "app_";
    const RANDOM_LEN: usize = 16;

    pub fn generate(rng: &mut impl Rng) -> Self {
        Self(format!(
            "{}{}",
            Self::PREFIX,
            random_string(rng, ID_ALPHABET, Self::RANDOM_LEN)
        ))
    }

    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let valid = value.strip_prefix(Self::PREFIX).is_some_and(|rest| {
            rest.len() == Self::RANDOM_LEN && rest.bytes().all(|b| ID_ALPHABET.contains(&b))
        });
        if valid {
            Ok(Self(value.to_string()))
        } else {
            Err(FieldError::new(
                "invalid_app_id",
                "app_id",
                format!("{value:?} is not an app id (they look like app_0123456789abcdef)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated app name: 1–100 characters.
pub fn parse_app_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    let len = name.chars().count();
    if len == 0 || len > 100 {
        return Err(FieldError::new(
            "invalid_length",
            "name",
            format!("must be 1 to 100 characters, got {len}"),
        ));
    }
    Ok(name.to_string())
}

/// Everything needed to create an app; the plaintext keys are printed once and then forgotten.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub id: AppId,
    pub name: String,
    pub timezone: AppTimeZone,
    pub secret_key: GeneratedKey,
    pub publishable_key: GeneratedKey,
}

impl NewApp {
    pub fn generate(
        name: &str,
        timezone: AppTimeZone,
        rng: &mut impl Rng,
    ) -> Result<Self, FieldError> {
        Ok(Self {
            id: AppId::generate(rng),
            name: parse_app_name(name)?,
            timezone,
            secret_key: GeneratedKey::generate(KeyKind::Secret, rng),
            publishable_key: GeneratedKey::generate(KeyKind::Publishable, rng),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn generated_ids_parse_back() {
        let mut rng = StdRng::seed_from_u64(1);
        let id = AppId::generate(&mut rng);
        assert_eq!(AppId::parse(id.as_str()).unwrap(), id);
        assert!(AppId::parse("app_UPPERCASE0123456").is_err());
        assert!(AppId::parse("app_short").is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(parse_app_name("  回流商城 ").unwrap(), "回流商城");
        assert!(parse_app_name("   ").is_err());
        assert!(parse_app_name(&"名".repeat(100)).is_ok());
        assert!(parse_app_name(&"名".repeat(101)).is_err());
    }
}
