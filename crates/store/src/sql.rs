//! Read statements both backends run as they are: the schemas agree on these tables,
//! and `$N` placeholders work in SQLite as in PostgreSQL (numbered in order of appearance,
//! since rusqlite binds them by position). Each statement's column order
//! matches the tuple type its record is built from.

/// Every app, oldest first; rows are [`AppColumns`](crate::records::AppColumns).
pub const LIST_APPS: &str =
    "SELECT seq, app_id, name, timezone, created_us, analytics FROM apps ORDER BY seq";

/// One app by its public id ($1); a row of [`AppColumns`](crate::records::AppColumns).
pub const FIND_APP: &str =
    "SELECT seq, app_id, name, timezone, created_us, analytics FROM apps WHERE app_id = $1";

/// A live key by its key id ($1), with its app; a row of [`KeyColumns`](crate::KeyColumns).
pub const FIND_KEY: &str =
    "SELECT k.key_id, k.kind, k.secret_hash, a.seq, a.app_id, a.name, a.timezone, a.created_us, a.analytics
     FROM api_keys k JOIN apps a ON a.seq = k.app_seq
     WHERE k.key_id = $1 AND k.revoked_us IS NULL";

/// A user of app $1 by user id $2; a row of [`UserColumns`](crate::UserColumns). First/last
/// seen and the event count come from the `events_by_user` index (two index probes and a
/// range count).
pub const GET_USER: &str = "SELECT u.user_id, u.user_index, u.openid, u.unionid, u.attributes,
    (SELECT min(e.time_us) FROM events e WHERE e.app_seq = u.app_seq AND e.user_index = u.user_index),
    (SELECT max(e.time_us) FROM events e WHERE e.app_seq = u.app_seq AND e.user_index = u.user_index),
    (SELECT count(*) FROM events e WHERE e.app_seq = u.app_seq AND e.user_index = u.user_index),
    u.created_us
    FROM users u WHERE u.app_seq = $1 AND u.user_id = $2";

/// An event of app $1 by its sender's id $2; a row of [`EventColumns`](crate::EventColumns).
pub const GET_EVENT: &str =
    "SELECT e.event_id, u.user_id, e.name, e.time_us, e.props, e.source, e.received_us
     FROM events e JOIN users u ON u.app_seq = e.app_seq AND u.user_index = e.user_index
     WHERE e.app_seq = $1 AND e.event_id = $2";

/// How many events app $1 has stored.
pub const COUNT_EVENTS: &str = "SELECT count(*) FROM events WHERE app_seq = $1";

/// Sets a user's profile columns: openid $1, unionid $2, attributes $3, of app $4's user $5.
/// Placeholders are numbered in order of appearance, because rusqlite binds by position.
pub const UPDATE_PROFILE: &str =
    "UPDATE users SET openid = $1, unionid = $2, attributes = $3 WHERE app_seq = $4 AND user_id = $5";

/// The app row's analytics columns for app $1: settings (JSON) and index generation.
pub const APP_INDEX_STATE: &str = "SELECT analytics, index_generation FROM apps WHERE seq = $1";

/// Events of app $1 by `seq` after $2, oldest first, at most $3: what a rebuild of
/// the activity index reads (seq, user_index, time_us, name).
pub const SCAN_EVENTS: &str = "SELECT seq, user_index, time_us, name FROM events
    WHERE app_seq = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// Stores app $1's template $2 with definition $3 at $4, replacing an earlier one.
pub const PUT_TEMPLATE: &str = "INSERT INTO templates (app_seq, template_id, definition, updated_us)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (app_seq, template_id) DO UPDATE SET definition = excluded.definition, updated_us = excluded.updated_us,
      disabled_reason = NULL";

/// App $1's template $2: its definition (JSON).
pub const GET_TEMPLATE: &str =
    "SELECT definition, disabled_reason FROM templates WHERE app_seq = $1 AND template_id = $2";

/// Every template definition of app $1, by id.
pub const LIST_TEMPLATES: &str =
    "SELECT definition, disabled_reason FROM templates WHERE app_seq = $1 ORDER BY template_id";

/// Stores app $1's WeChat settings: appid $2, sealed secret $3, token $4, AES key $5, API base $6, at $7.
pub const PUT_WECHAT: &str = "INSERT INTO wechat_settings
    (app_seq, appid, secret_sealed, token_sealed, aes_key_sealed, api_base, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (app_seq) DO UPDATE SET appid = excluded.appid, secret_sealed = excluded.secret_sealed,
      token_sealed = excluded.token_sealed, aes_key_sealed = excluded.aes_key_sealed,
      api_base = excluded.api_base, updated_us = excluded.updated_us";

/// App $1's WeChat settings; a row of [`WechatColumns`](crate::WechatColumns).
pub const GET_WECHAT: &str = "SELECT appid, secret_sealed, token_sealed, aes_key_sealed, api_base
    FROM wechat_settings WHERE app_seq = $1";

/// A stored idempotency key of app $1 in scope $2: key $3 → (request_hash, response).
pub const FIND_IDEMPOTENCY: &str =
    "SELECT request_hash, response FROM idempotency_keys WHERE app_seq = $1 AND scope = $2 AND key = $3";

/// Stores an idempotency key: app $1, scope $2, key $3, request hash $4, response $5, at $6.
pub const PUT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency_keys (app_seq, scope, key, request_hash, response, created_us)
    VALUES ($1, $2, $3, $4, $5, $6)";

/// Appends a credit-history row: app $1, user $2, template $3, delta $4, credits after $5,
/// long-term after $6, status $7, cause $8, message id $9, at $10, unpaired $11.
pub const INSERT_CREDIT_HISTORY: &str = "INSERT INTO credit_history
    (app_seq, user_index, template_id, delta, credits_after, long_term_after, status, cause, message_id,
     created_us, unpaired)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// The oldest acceptance of app $1, user $2, template $3 reported with cause $4 at or
/// after $5 that the other path has not reported yet: its seq.
pub const FIND_UNPAIRED: &str = "SELECT seq FROM credit_history
    WHERE app_seq = $1 AND user_index = $2 AND template_id = $3 AND cause = $4 AND unpaired = TRUE
      AND created_us >= $5
    ORDER BY seq LIMIT 1";

/// Marks acceptance $1 as reported by both paths.
pub const PAIR_ACCEPTANCE: &str = "UPDATE credit_history SET unpaired = FALSE WHERE seq = $1";

/// Stores a subscription: app $1, user $2, template $3, credits $4, long-term $5, status $6, at $7.
pub const PUT_SUBSCRIPTION: &str = "INSERT INTO subscriptions
    (app_seq, user_index, template_id, credits, long_term, status, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (app_seq, user_index, template_id) DO UPDATE SET credits = excluded.credits,
      long_term = excluded.long_term, status = excluded.status, updated_us = excluded.updated_us";

/// A user's subscriptions (app $1, user id $2), rows of
/// [`SubscriptionColumns`](crate::SubscriptionColumns): no row for an unknown user, one
/// row of NULLs for a user without subscriptions.
pub const LIST_SUBSCRIPTIONS: &str =
    "SELECT s.template_id, s.credits, s.long_term, s.status, s.updated_us, s.reserved
    FROM users u LEFT JOIN subscriptions s ON s.app_seq = u.app_seq AND s.user_index = u.user_index
    WHERE u.app_seq = $1 AND u.user_id = $2 ORDER BY s.template_id";

/// App $1's cached token: token_sealed, expires_us.
pub const GET_TOKEN: &str =
    "SELECT token_sealed, expires_us FROM wechat_tokens WHERE app_seq = $1 AND token_sealed IS NOT NULL";

/// Makes sure app $1 has a token row.
pub const ENSURE_TOKEN_ROW: &str =
    "INSERT INTO wechat_tokens (app_seq) VALUES ($1) ON CONFLICT (app_seq) DO NOTHING";

/// Leases the refresh to holder $1 until $2, for app $3, unless another holder's
/// lease runs past $4 ($5 is the holder again: placeholders are numbered in order
/// of appearance, because rusqlite binds by position).
pub const LEASE_TOKEN: &str = "UPDATE wechat_tokens SET lease_holder = $1, lease_until_us = $2
    WHERE app_seq = $3 AND (lease_until_us IS NULL OR lease_until_us <= $4 OR lease_holder = $5)";

/// Stores token $1 expiring at $2 for app $3 if holder $4 holds the lease, ending it.
pub const PUT_TOKEN: &str = "UPDATE wechat_tokens SET token_sealed = $1, expires_us = $2,
    lease_holder = NULL, lease_until_us = NULL WHERE app_seq = $3 AND lease_holder = $4";

/// Forgets app $1's token if it is still $2.
pub const DROP_TOKEN: &str = "UPDATE wechat_tokens SET token_sealed = NULL, expires_us = NULL
    WHERE app_seq = $1 AND token_sealed = $2";

/// The oldest packed rows (seq, users) of app $1, at most $2: what compaction opens.
pub const PACKED_ACTIVITY_ROWS: &str = "SELECT seq, users FROM activity_bitmaps
    WHERE app_seq = $1 AND kind = 3 ORDER BY seq LIMIT $2";

/// The stored (resolved) first-active rows (seq, day, users) of app $1.
pub const STORED_FIRST_ACTIVE: &str = "SELECT seq, day, users FROM activity_bitmaps
    WHERE app_seq = $1 AND kind = 1";

/// The merged rows (seq, users) of one key of app $1: day $2, kind $3, event $4.
pub const ACTIVITY_ROWS_OF_KEY: &str = "SELECT seq, users FROM activity_bitmaps
    WHERE app_seq = $1 AND day = $2 AND kind = $3 AND event = $4 AND kind <> 3";
