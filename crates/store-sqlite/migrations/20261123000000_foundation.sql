-- Apps, keys, users and raw events. Instants are INTEGER microseconds since the Unix epoch (UTC).

CREATE TABLE apps (
    seq             INTEGER PRIMARY KEY,
    app_id          TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    -- the next dense user index to hand out; bitmaps key on these
    next_user_index INTEGER NOT NULL DEFAULT 0,
    created_us      INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    app_seq     INTEGER NOT NULL REFERENCES apps (seq),
    kind        TEXT NOT NULL CHECK (kind IN ('secret', 'publishable')),
    secret_hash BLOB NOT NULL,
    created_us  INTEGER NOT NULL,
    revoked_us  INTEGER
);

CREATE TABLE users (
    app_seq     INTEGER NOT NULL REFERENCES apps (seq),
    user_index  INTEGER NOT NULL,
    user_id     TEXT NOT NULL,
    openid      TEXT,
    unionid     TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_us  INTEGER NOT NULL,
    PRIMARY KEY (app_seq, user_index)
);
CREATE UNIQUE INDEX users_by_user_id ON users (app_seq, user_id);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    app_seq     INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    user_index  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    time_us     INTEGER NOT NULL,
    props       TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('server', 'client', 'import')),
    received_us INTEGER NOT NULL
);
-- dedupe: an event id is stored once per app
CREATE UNIQUE INDEX events_by_event_id ON events (app_seq, event_id);
-- a user's first and last event time and event count are read from here rather than
-- kept in the user row: concurrent batches then never contend for the same user rows
CREATE INDEX events_by_user ON events (app_seq, user_index, time_us);
