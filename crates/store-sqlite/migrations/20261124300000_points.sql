-- The points ledger: append-only entries (each names its cause), the lots earns
-- create (what is left of each, its expiry), and per user the debt a reversal
-- beyond the balance left. Balances are derived from the lots.
CREATE TABLE points_entries (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    allocation TEXT,
    created_us BIGINT NOT NULL
);
CREATE INDEX points_entries_by_user ON points_entries (app_seq, user_index, seq);

CREATE TABLE points_lots (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    lot_id     BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    remaining  BIGINT NOT NULL,
    expires_us BIGINT,
    PRIMARY KEY (app_seq, user_index, lot_id)
);

CREATE TABLE points_accounts (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    debt       BIGINT NOT NULL DEFAULT 0,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index)
);
