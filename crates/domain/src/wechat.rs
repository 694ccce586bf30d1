//! An app's WeChat settings: its mini-program's AppID and AppSecret, and the
//! callback Token and EncodingAESKey configured for message push. Checked here
//! in the formats the WeChat console issues; sealed at rest by the server.

use crate::FieldError;
use serde::Deserialize;
use serde_json::Value;

/// Plain WeChat settings, as given by an operator.
#[derive(Clone, PartialEq, Eq)]
pub struct WechatSettings {
    pub appid: String,
    pub secret: String,
    pub token: Option<String>,
    pub aes_key: Option<String>,
    /// Overrides the server's `HUILIU_WECHAT_API_BASE` for this app.
    pub api_base: Option<String>,
}

impl std::fmt::Debug for WechatSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatSettings")
            .field("appid", &self.appid)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    appid: String,
    secret: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    aes_key: Option<String>,
    #[serde(default)]
    api_base: Option<String>,
}

fn check(ok: bool, code: &'static str, field: &str, message: &str) -> Result<(), FieldError> {
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(code, field, message))
    }
}

impl WechatSettings {
    /// Parses `{"appid", "secret", "token"?, "aes_key"?, "api_base"?}`.
    pub fn parse(body: &Value) -> Result<Self, FieldError> {
        let input: Input = serde_json::from_value(body.clone()).map_err(|e| {
            FieldError::new(
                "invalid_settings",
                "body",
                format!("not WeChat settings: {e}"),
            )
        })?;
        Self::new(
            input.appid,
            input.secret,
            input.token,
            input.aes_key,
            input.api_base,
        )
    }

    pub fn new(
        appid: String,
        secret: String,
        token: Option<String>,
        aes_key: Option<String>,
        api_base: Option<String>,
    ) -> Result<Self, FieldError> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        check(
            appid.strip_prefix("wx").is_some_and(|rest| hex(rest, 16)),
            "invalid_appid",
            "appid",
            "a mini-program AppID is wx followed by 16 hexadecimal characters",
        )?;
        check(
            hex(&secret, 32),
            "invalid_secret",
            "secret",
            "an AppSecret is 32 hexadecimal characters",
        )?;
        if let Some(token) = &token {
            check(
                (3..=32).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric()),
                "invalid_token",
                "token",
                "a callback Token is 3–32 letters or digits",
            )?;
        }
        if let Some(key) = &aes_key {
            check(
                key.len() == 43 && key.bytes().all(|b| b.is_ascii_alphanumeric()),
                "invalid_aes_key",
                "aes_key",
                "an EncodingAESKey is 43 letters or digits",
            )?;
        }
        if let Some(base) = &api_base {
            let rest = base
                .strip_prefix("https://")
                .or_else(|| base.strip_prefix("http://"));
            check(
                base.len() <= 256
                    && rest.is_some_and(|r| {
                        !r.is_empty() && !r.contains(['?', '#', ' ']) && r.is_ascii()
                    }),
                "invalid_api_base",
                "api_base",
                "an API base is an http:// or https:// URL without query, such as https://api.weixin.qq.com",
            )?;
        }
        Ok(Self {
            appid,
            secret,
            token,
            aes_key,
            api_base: api_base.map(|b| b.trim_end_matches('/').to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APPID: &str = "wx4f28b4b2dcaafca1";
    const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

    #[test]
    fn console_formats_are_accepted() {
        let s = WechatSettings::parse(&json!({
            "appid": APPID, "secret": SECRET, "token": "huiliuToken1",
            "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "api_base": "http://127.0.0.1:9000/"
        }))
        .unwrap();
        assert_eq!(s.api_base.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(
            !format!("{s:?}").contains(SECRET),
            "the secret is never printed"
        );
    }

    #[test]
    fn each_bad_value_names_its_field() {
        for (body, field) in [
            (json!({"appid": "wx123", "secret": SECRET}), "appid"),
            (
                json!({"appid": "ab4f28b4b2dcaafca1", "secret": SECRET}),
                "appid",
            ),
            (json!({"appid": "wé", "secret": SECRET}), "appid"),
            (json!({"appid": APPID, "secret": "short"}), "secret"),
            (
                json!({"appid": APPID, "secret": SECRET, "token": "ab"}),
                "token",
            ),
            (
                json!({"appid": APPID, "secret": SECRET, "token": "has space"}),
                "token",
            ),
            (
                json!({"appid": APPID, "secret": SECRET, "aes_key": "tooshort"}),
                "aes_key",
            ),
            (
                json!({"appid": APPID, "secret": SECRET, "api_base": "ftp://x"}),
                "api_base",
            ),
            (
                json!({"appid": APPID, "secret": SECRET, "api_base": "https://x/?a=1"}),
                "api_base",
            ),
            (json!({"appid": APPID}), "body"),
            (
                json!({"appid": APPID, "secret": SECRET, "other": 1}),
                "body",
            ),
        ] {
            assert_eq!(
                WechatSettings::parse(&body).unwrap_err().field.as_deref(),
                Some(field),
                "{body}"
            );
        }
    }
}
