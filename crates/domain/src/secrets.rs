//! Secrets at rest: an app's WeChat AppSecret, callback token and EncodingAESKey
//! are sealed with XChaCha20-Poly1305 under a master key that never enters the
//! database. The random nonce is passed in, so sealing stays free of IO.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;

/// Bytes of nonce each sealed value carries.
pub const NONCE_BYTES: usize = 24;
const VERSION: u8 = 1;

/// The 32-byte key that seals secrets; written as 64 hex characters.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a master key is 64 hexadecimal characters (32 bytes)")]
    BadKey,
    /// Wrong master key, or the stored value was altered.
    #[error("a stored secret cannot be opened with this master key (was the key changed?)")]
    CannotOpen,
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return Err(SecretError::BadKey);
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| SecretError::BadKey)?;
            bytes[i] = u8::from_str_radix(pair, 16).map_err(|_| SecretError::BadKey)?;
        }
        Ok(Self(bytes))
    }

    /// The key as 64 lowercase hex characters (for writing a key file).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Seals `plaintext`; `context` (e.g. `app_…/wechat_secret`) is bound to the
    /// result, so a sealed value copied to another app or field does not open.
    pub fn seal(&self, plaintext: &str, context: &str, nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("encrypting into a Vec cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`MasterKey::seal`] produced with the same context.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<String, SecretError> {
        if sealed.len() < 1 + NONCE_BYTES || sealed[0] != VERSION {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::CannotOpen)?;
        String::from_utf8(plain).map_err(|_| SecretError::CannotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let sealed = key(1).seal(
            "3e2fa5ce1990693588816ff28e259ae0",
            "app_x/secret",
            [7; NONCE_BYTES],
        );
        assert!(
            !sealed.windows(8).any(|w| w == b"3e2fa5ce"),
            "no plaintext at rest"
        );
        assert_eq!(
            key(1).open(&sealed, "app_x/secret").unwrap(),
            "3e2fa5ce1990693588816ff28e259ae0"
        );
        assert_eq!(
            key(2).open(&sealed, "app_x/secret"),
            Err(SecretError::CannotOpen)
        );
        assert_eq!(
            key(1).open(&sealed, "app_y/secret"),
            Err(SecretError::CannotOpen)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            key(1).open(&altered, "app_x/secret"),
            Err(SecretError::CannotOpen)
        );
        assert_eq!(
            key(1).open(&[], "app_x/secret"),
            Err(SecretError::CannotOpen)
        );
    }

    #[test]
    fn keys_round_trip_through_hex_and_bad_ones_are_refused() {
        let k = key(0xab);
        assert_eq!(MasterKey::parse(&format!(" {}\n", k.to_hex())).unwrap(), k);
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert_eq!(MasterKey::parse(bad), Err(SecretError::BadKey), "{bad}");
        }
        assert_eq!(format!("{k:?}"), "MasterKey(…)", "never printed");
    }
}
