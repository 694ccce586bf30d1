-- Apps, keys, users and raw events. Instants are BIGINT microseconds since the Unix epoch (UTC),
-- the same representation as the SQLite store, so raw-event SQL reads alike on both.

CREATE TABLE apps (
    seq             BIGSERIAL PRIMARY KEY,
    app_id          TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    -- the next dense user index to hand out; bitmaps key on these
    next_user_index BIGINT NOT NULL DEFAULT 0,
    created_us      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    app_seq     BIGINT NOT NULL REFERENCES apps (seq),
    kind        TEXT NOT NULL CHECK (kind IN ('secret', 'publishable')),
    secret_hash BYTEA NOT NULL,
    created_us  BIGINT NOT NULL,
    revoked_us  BIGINT
);

CREATE TABLE users (
    app_seq     BIGINT NOT NULL REFERENCES apps (seq),
    user_index  BIGINT NOT NULL,
    user_id     TEXT NOT NULL,
    openid      TEXT,
    unionid     TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_us  BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index)
);
CREATE UNIQUE INDEX users_by_user_id ON users (app_seq, user_id);

CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    app_seq     BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    user_index  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    time_us     BIGINT NOT NULL,
    props       TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('server', 'client', 'import')),
    received_us BIGINT NOT NULL
);
-- dedupe: an event id is stored once per app
CREATE UNIQUE INDEX events_by_event_id ON events (app_seq, event_id);
-- a user's first and last event time and event count are read from here rather than
-- kept in the user row: concurrent batches then never contend for the same user rows
CREATE INDEX events_by_user ON events (app_seq, user_index, time_us);
