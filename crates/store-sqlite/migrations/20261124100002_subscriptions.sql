-- Subscription credits: per user and template, the one-time sends still allowed, a
-- long-term permission, and the user's latest answer. Every change is also a row in
-- credit_history (cause, message id), so a balance can always be explained.
CREATE TABLE subscriptions (
    app_seq     BIGINT NOT NULL REFERENCES apps (seq),
    user_index  BIGINT NOT NULL,
    template_id TEXT NOT NULL,
    credits     BIGINT NOT NULL,
    long_term   INTEGER NOT NULL,
    status      TEXT,
    updated_us  BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index, template_id)
);

CREATE TABLE credit_history (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    app_seq         BIGINT NOT NULL,
    user_index      BIGINT NOT NULL,
    template_id     TEXT NOT NULL,
    delta           BIGINT NOT NULL,
    credits_after   BIGINT NOT NULL,
    long_term_after INTEGER NOT NULL,
    status          TEXT,
    cause           TEXT NOT NULL,
    message_id      TEXT,
    created_us      BIGINT NOT NULL
);
CREATE INDEX credit_history_by_user ON credit_history (app_seq, user_index, template_id, seq);

-- Write requests replayed with the same idempotency key get the first answer back.
CREATE TABLE idempotency_keys (
    app_seq      BIGINT NOT NULL,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    response     TEXT NOT NULL,
    created_us   BIGINT NOT NULL,
    PRIMARY KEY (app_seq, scope, key)
);
