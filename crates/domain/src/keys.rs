//! API keys: how they look, how they are generated, hashed and checked.
//!
//! A key reads `hl_sk_<key id>_<secret>` (secret key, for the company's backend)
//! or `hl_pk_<key id>_<secret>` (publishable key, embedded in the mini-program).
//! The key id is public and finds the stored row; only a SHA-256 hash of the
//! secret part is stored. The secret is 190 random bits, so a fast hash is as
//! strong as a slow password hash here, and it keeps every request cheap.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const KEY_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Held by the company's backend: full API access, trusted events.
    Secret,
    /// Shipped inside the mini-program, so assume anyone has it: events only, untrusted.
    Publishable,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Publishable => "publishable",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "secret" => Some(KeyKind::Secret),
            "publishable" => Some(KeyKind::Publishable),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "hl_sk_",
            KeyKind::Publishable => "hl_pk_",
        }
    }
}

/// A key as presented in an `Authorization` header, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub kind: KeyKind,
    pub key_id: &'a str,
    secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// Splits a key; `None` when it cannot be one of ours (so it is simply unknown).
    pub fn parse(token: &'a str) -> Option<Self> {
        let (kind, rest) = if let Some(rest) = token.strip_prefix(KeyKind::Secret.prefix()) {
            (KeyKind::Secret, rest)
        } else {
            (
                KeyKind::Publishable,
                token.strip_prefix(KeyKind::Publishable.prefix())?,
            )
        };
        let (key_id, secret) = rest.split_once('_')?;
        let well_formed = key_id.len() == KEY_ID_LEN
            && secret.len() == SECRET_LEN
            && key_id.bytes().all(|b| KEY_ID_ALPHABET.contains(&b))
            && secret.bytes().all(|b| SECRET_ALPHABET.contains(&b));
        well_formed.then_some(Self {
            kind,
            key_id,
            secret,
        })
    }

    /// Compares against a stored hash in constant time, so response timing
    /// reveals nothing about how much of a guessed secret was right.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        hash_secret(self.secret).ct_eq(stored_hash).into()
    }
}

/// A freshly generated key: the plaintext is shown once and never stored.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub kind: KeyKind,
    pub key_id: String,
    pub secret_hash: Vec<u8>,
    pub plaintext: String,
}

impl GeneratedKey {
    pub fn generate(kind: KeyKind, rng: &mut impl Rng) -> Self {
        let key_id = random_string(rng, KEY_ID_ALPHABET, KEY_ID_LEN);
        let secret = random_string(rng, SECRET_ALPHABET, SECRET_LEN);
        Self {
            kind,
            secret_hash: hash_secret(&secret),
            plaintext: format!("{}{key_id}_{secret}", kind.prefix()),
            key_id,
        }
    }
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A random string over `alphabet`; used for keys and ids.
pub fn random_string(rng: &mut impl Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Lower-case letters and digits: safe in URLs, paths and file names.
pub const ID_ALPHABET: &[u8] = KEY_ID_ALPHABET;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn generated_key_parses_and_matches_its_hash() {
        let mut rng = StdRng::seed_from_u64(7);
        for kind in [KeyKind::Secret, KeyKind::Publishable] {
            let key = GeneratedKey::generate(kind, &mut rng);
            let presented = PresentedKey::parse(&key.plaintext).expect("well formed");
            assert_eq!(presented.kind, kind);
            assert_eq!(presented.key_id, key.key_id);
            assert!(presented.matches(&key.secret_hash));
        }
    }

    #[test]
    fn a_changed_secret_does_not_match() {
        let mut rng = StdRng::seed_from_u64(8);
        let key = GeneratedKey::generate(KeyKind::Secret, &mut rng);
        let mut tampered = key.plaintext.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let presented = PresentedKey::parse(&tampered).unwrap();
        assert!(!presented.matches(&key.secret_hash));
    }

    #[test]
    fn foreign_tokens_are_not_keys() {
        for token in [
            "",
            "hl_sk_",
            "Bearer x",
            "hl_xx_abcdefghijkl_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",
            "hl_sk_abcdefghijkl_short",
            "hl_sk_ABCDEFGHIJKL_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",
        ] {
            assert!(PresentedKey::parse(token).is_none(), "{token}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn only_the_exact_secret_matches(seed in any::<u64>(), position in 0usize..32, replacement in "[A-Za-z0-9]") {
            let key = GeneratedKey::generate(KeyKind::Secret, &mut StdRng::seed_from_u64(seed));
            prop_assert!(PresentedKey::parse(&key.plaintext).unwrap().matches(&key.secret_hash));
            let secret_start = key.plaintext.len() - 32;
            let mut changed = key.plaintext.clone();
            changed.replace_range(secret_start + position..secret_start + position + 1, &replacement);
            let presented = PresentedKey::parse(&changed).unwrap();
            prop_assert_eq!(presented.matches(&key.secret_hash), changed == key.plaintext);
        }
    }
}
