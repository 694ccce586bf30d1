-- Subscription-message templates an app sends with: the definition (title, kind,
-- fields with their types and enum values) as JSON, replaced whole by each PUT.
CREATE TABLE templates (
    app_seq     BIGINT NOT NULL REFERENCES apps (seq),
    template_id TEXT NOT NULL,
    definition  TEXT NOT NULL,
    updated_us  BIGINT NOT NULL,
    PRIMARY KEY (app_seq, template_id)
);
