-- An app's WeChat settings. The AppSecret, callback Token and EncodingAESKey are
-- stored sealed (XChaCha20-Poly1305 under the server's master key, which is not in
-- the database); the AppID and API base are not secret.
CREATE TABLE wechat_settings (
    app_seq        BIGINT PRIMARY KEY REFERENCES apps (seq),
    appid          TEXT NOT NULL,
    secret_sealed  BYTEA NOT NULL,
    token_sealed   BYTEA,
    aes_key_sealed BYTEA,
    api_base       TEXT,
    updated_us     BIGINT NOT NULL
);
