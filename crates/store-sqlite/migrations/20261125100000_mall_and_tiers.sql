-- The redemption mall: rewards with their stock (NULL: unlimited; coupon-code
-- rewards count their pool instead), the pools' codes (each given to at most
-- one redemption), and the redemptions with the hold and capture that paid.
CREATE TABLE rewards (
    app_seq      BIGINT NOT NULL,
    reward_key   TEXT NOT NULL,
    spec         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    points_price BIGINT NOT NULL,
    stock        BIGINT,
    redeemed     BIGINT NOT NULL DEFAULT 0,
    updated_us   BIGINT NOT NULL,
    PRIMARY KEY (app_seq, reward_key)
);

CREATE TABLE coupon_codes (
    app_seq       BIGINT NOT NULL,
    reward_key    TEXT NOT NULL,
    code          TEXT NOT NULL,
    redemption_id BIGINT,
    imported_us   BIGINT NOT NULL,
    PRIMARY KEY (app_seq, reward_key, code)
);
CREATE INDEX coupon_codes_free ON coupon_codes (app_seq, reward_key) WHERE redemption_id IS NULL;

CREATE TABLE redemptions (
    redemption_id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_seq       BIGINT NOT NULL,
    user_index    BIGINT NOT NULL,
    reward_key    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    points        BIGINT NOT NULL,
    cash_fen      BIGINT,
    status        TEXT NOT NULL,
    hold_id       BIGINT NOT NULL,
    capture_id    BIGINT NOT NULL,
    refund_id     BIGINT,
    code          TEXT,
    created_us    BIGINT NOT NULL,
    updated_us    BIGINT NOT NULL
);
CREATE INDEX redemptions_by_user ON redemptions (app_seq, user_index, reward_key);

-- Tiers: each app's configuration by version (a member's state names the
-- version it was judged under, so a change is carried over, never applied
-- backwards), growth value entries (never spent), and members' tiers.
CREATE TABLE tier_configs (
    app_seq    BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    config     TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (app_seq, version)
);

CREATE TABLE growth_entries (
    app_seq    BIGINT NOT NULL,
    user_index BIGINT NOT NULL,
    at_us      BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    cause_type TEXT NOT NULL,
    cause_id   TEXT
);
CREATE INDEX growth_entries_by_user ON growth_entries (app_seq, user_index, at_us);

CREATE TABLE member_tiers (
    app_seq        BIGINT NOT NULL,
    user_index     BIGINT NOT NULL,
    tier           TEXT NOT NULL,
    since_us       BIGINT NOT NULL,
    grace_until_us BIGINT,
    config_version BIGINT NOT NULL,
    updated_us     BIGINT NOT NULL,
    PRIMARY KEY (app_seq, user_index)
);
