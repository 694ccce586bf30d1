-- Each app's WeChat access token, shared by every node: sealed like the other
-- WeChat secrets, with its expiry, and a lease so that one node at a time refreshes it.
CREATE TABLE wechat_tokens (
    app_seq        BIGINT PRIMARY KEY REFERENCES apps (seq),
    token_sealed   BYTEA,
    expires_us     BIGINT,
    lease_holder   TEXT,
    lease_until_us BIGINT
);
