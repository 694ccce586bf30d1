-- The full ledger: pending earns (vests_us) and voided lots, holds for
-- redemptions, entries that name their cause and the entry they act on, and
-- per account the cached figures of the last write (valid until a lot vests or
-- expires), so reports need not replay lots.
ALTER TABLE points_lots ADD COLUMN vests_us BIGINT;
ALTER TABLE points_lots ADD COLUMN voided BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE points_lots ADD COLUMN expired BIGINT NOT NULL DEFAULT 0;
CREATE INDEX points_lots_expiring ON points_lots (app_seq, expires_us) WHERE remaining > 0;

ALTER TABLE points_entries ADD COLUMN cause_type TEXT NOT NULL DEFAULT 'api';
ALTER TABLE points_entries ADD COLUMN cause_id TEXT;
ALTER TABLE points_entries ADD COLUMN refers_to BIGINT;
ALTER TABLE points_entries ADD COLUMN shortfall BIGINT NOT NULL DEFAULT 0;
CREATE INDEX points_entries_refers ON points_entries (app_seq, refers_to) WHERE refers_to IS NOT NULL;
CREATE INDEX points_entries_by_time ON points_entries (app_seq, created_us);

CREATE TABLE points_holds (
    app_seq      BIGINT NOT NULL,
    user_index   BIGINT NOT NULL,
    hold_id      BIGINT NOT NULL,
    allocation   TEXT NOT NULL,
    times_out_us BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index, hold_id)
);
CREATE INDEX points_holds_timeout ON points_holds (times_out_us);

ALTER TABLE points_accounts ADD COLUMN balance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE points_accounts ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE points_accounts ADD COLUMN on_hold BIGINT NOT NULL DEFAULT 0;
ALTER TABLE points_accounts ADD COLUMN valid_until_us BIGINT;
CREATE INDEX points_accounts_due ON points_accounts (valid_until_us) WHERE valid_until_us IS NOT NULL;

ALTER TABLE points_settings ADD COLUMN shortfall TEXT NOT NULL DEFAULT 'allow_debt';
