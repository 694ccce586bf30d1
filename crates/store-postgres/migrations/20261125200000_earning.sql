-- Earning rules, tasks and the daily sign-in: each app's definitions (JSON, in
-- the order given), the event names any of them listens to (kept with the
-- definitions, read by ingest), trusted events waiting to be judged (queued in
-- the ingest transaction, removed in the transaction that awards them, so each
-- is judged exactly once), points awarded per rule and period (user_index -1:
-- the app-wide budget) and each user's task and sign-in state.
CREATE TABLE loyalty_items (
    app_seq    BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    item_key   TEXT NOT NULL,
    body       TEXT NOT NULL,
    position   BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (app_seq, kind, item_key)
);

CREATE TABLE award_events (
    app_seq    BIGINT NOT NULL,
    event_name TEXT NOT NULL,
    PRIMARY KEY (app_seq, event_name)
);

CREATE TABLE award_queue (
    app_seq   BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    PRIMARY KEY (app_seq, event_seq)
);

CREATE TABLE rule_usage (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    rule_key   TEXT NOT NULL,
    period     TEXT NOT NULL,
    points     BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index, rule_key, period)
);

CREATE TABLE task_states (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    task_key   TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index, task_key)
);
