-- The activity index: roaring bitmaps of users per local day, kept beside the raw events.
-- A batch of events writes one packed row (kind 3: all its day bitmaps in one blob) in its
-- own transaction; compaction later opens packed rows and merges them into one row per
-- day, kind and event. Rows are only ever unioned, so duplicates are harmless.

-- Which events count as activity and which are tracked (JSON, see AnalyticsSettings).
ALTER TABLE apps ADD COLUMN analytics TEXT NOT NULL DEFAULT '{}';
-- Moves on each rebuild of the app's index, telling readers to start over.
ALTER TABLE apps ADD COLUMN index_generation BIGINT NOT NULL DEFAULT 0;

CREATE TABLE activity_bitmaps (
    seq     BIGSERIAL PRIMARY KEY,
    -- no foreign key: every batch would take a key-share lock on its app row, and
    -- concurrent batches would then share that lock through multixacts
    app_seq BIGINT NOT NULL,
    -- local day in the app's zone, as days since 1970-01-01
    day     INTEGER NOT NULL,
    -- 0 active, 1 first-active candidates, 2 a tracked event, 3 a packed batch of rows
    kind    SMALLINT NOT NULL,
    event   TEXT NOT NULL DEFAULT '',
    -- portable roaring serialisation
    users   BYTEA NOT NULL,
    -- the writing transaction: a seq is taken before commit, so rows can become visible
    -- out of seq order; readers re-read rows of transactions open at their last read
    xact    BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
);
CREATE INDEX activity_by_app ON activity_bitmaps (app_seq, seq);
-- compaction finds the merged row of a key; packed rows stay out of this index
CREATE INDEX activity_by_key ON activity_bitmaps (app_seq, day, kind, event) WHERE kind <> 3;
