//! Sealing an app's WeChat secrets for the store and opening them again. Each
//! secret is bound to its app and field, so a sealed value moved elsewhere does
//! not open.

use huiliu_domain::secrets::{MasterKey, SecretError, NONCE_BYTES};
use huiliu_domain::wechat::WechatSettings;
use huiliu_store::{AppRecord, StoredWechat};

fn context(app: &AppRecord, field: &str) -> String {
    format!("{}/wechat/{field}", app.id)
}

fn nonce() -> [u8; NONCE_BYTES] {
    rand::random()
}

pub fn seal(key: &MasterKey, app: &AppRecord, settings: &WechatSettings) -> StoredWechat {
    let seal = |value: &str, field: &str| key.seal(value, &context(app, field), nonce());
    StoredWechat {
        appid: settings.appid.clone(),
        secret_sealed: seal(&settings.secret, "secret"),
        token_sealed: settings.token.as_deref().map(|t| seal(t, "token")),
        aes_key_sealed: settings.aes_key.as_deref().map(|k| seal(k, "aes_key")),
        api_base: settings.api_base.clone(),
    }
}

pub fn open(
    key: &MasterKey,
    app: &AppRecord,
    stored: &StoredWechat,
) -> Result<WechatSettings, SecretError> {
    let open = |sealed: &[u8], field: &str| key.open(sealed, &context(app, field));
    Ok(WechatSettings {
        appid: stored.appid.clone(),
        secret: open(&stored.secret_sealed, "secret")?,
        token: stored
            .token_sealed
            .as_deref()
            .map(|t| open(t, "token"))
            .transpose()?,
        aes_key: stored
            .aes_key_sealed
            .as_deref()
            .map(|k| open(k, "aes_key"))
            .transpose()?,
        api_base: stored.api_base.clone(),
    })
}
