-- Subscription messages and their outbox. A message row is the outbox entry:
-- workers claim due rows with a lease, send outside any transaction and record
-- the outcome. `next_attempt_us` is when a worker must look at the row again:
-- a queued message's next try, a sending message's lease end, an unknown
-- outcome's reconciliation deadline.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    app_seq         BIGINT NOT NULL REFERENCES apps (seq),
    user_index      BIGINT NOT NULL,
    template_id     TEXT NOT NULL,
    data            TEXT NOT NULL,
    page            TEXT,
    tracking        TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_us BIGINT NOT NULL,
    expires_us      BIGINT NOT NULL,
    lease_holder    TEXT,
    reserved        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    errcode         BIGINT,
    errmsg          TEXT,
    wechat_msgid    TEXT,
    created_us      BIGINT NOT NULL,
    updated_us      BIGINT NOT NULL,
    sent_us         BIGINT,
    opened_us       BIGINT
);
CREATE INDEX messages_due ON messages (next_attempt_us) WHERE status IN ('queued', 'sending', 'unknown');
CREATE UNIQUE INDEX messages_by_tracking ON messages (app_seq, tracking);
CREATE INDEX messages_by_user ON messages (app_seq, user_index, created_us);

-- One send in flight per user (WeChat answers 43108 to concurrent sends to one user).
CREATE TABLE message_inflight (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (app_seq, user_index)
);

-- A one-time credit taken by a message being sent: neither available nor spent yet.
ALTER TABLE subscriptions ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;

-- A template WeChat banned (43107) is not sent with until an operator re-enables it.
ALTER TABLE templates ADD COLUMN disabled_reason TEXT;
