-- Each app's points policy: when earned points expire by default, as JSON
-- (`{"kind": "never" | "days" | "end_of_month" | "end_of_year", "days"?}`).
CREATE TABLE points_settings (
    app_seq    BIGINT PRIMARY KEY,
    expiry     TEXT NOT NULL,
    updated_us BIGINT NOT NULL
);
