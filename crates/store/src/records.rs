use huiliu_domain::analytics::{AnalyticsSettings, DayBitmap};
use huiliu_domain::apps::AppId;
use huiliu_domain::events::EventSource;
use huiliu_domain::keys::KeyKind;
use huiliu_domain::time::AppTimeZone;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// A stored app. `store_key` is the backend's compact internal key for the app's
/// rows; it never leaves the process.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRecord {
    pub store_key: i64,
    pub id: AppId,
    pub name: String,
    pub timezone: AppTimeZone,
    pub created_at: Timestamp,
    /// Which events count as activity and which are tracked.
    pub analytics: AnalyticsSettings,
}

/// A stored API key: only the hash of its secret part.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key_id: String,
    pub kind: KeyKind,
    pub secret_hash: Vec<u8>,
    pub app: AppRecord,
}

/// A stored user with the activity summary kept at ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    pub user_index: u32,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub attributes: Map<String, Value>,
    /// Earliest and latest event time (not arrival time); `None` before any event.
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub event_count: i64,
    pub created_at: Timestamp,
}

/// What became of a batch: events stored now, and events the app had already sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
}

/// An event as stored, with who sent it and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub time: Timestamp,
    pub props: String,
    pub source: EventSource,
    pub received_at: Timestamp,
}

/// The stored columns of an app row: seq, app_id, name, timezone, created_us, analytics (JSON).
pub type AppColumns = (i64, String, String, String, i64, String);

impl AppRecord {
    /// Builds a record from a row of [`AppColumns`].
    pub fn from_row(row: AppColumns) -> Result<Self, crate::StoreError> {
        let (seq, id, name, timezone, created_us, analytics) = row;
        let mut app = Self::from_columns(seq, &id, name, &timezone, created_us)?;
        app.analytics = serde_json::from_str(&analytics).map_err(crate::StoreError::internal)?;
        Ok(app)
    }

    /// Builds a record from stored columns; a stored value that no longer parses is an internal error.
    pub fn from_columns(
        store_key: i64,
        id: &str,
        name: String,
        timezone: &str,
        created_us: i64,
    ) -> Result<Self, crate::StoreError> {
        Ok(Self {
            store_key,
            id: AppId::parse(id).map_err(crate::StoreError::internal)?,
            name,
            timezone: AppTimeZone::parse(timezone).map_err(crate::StoreError::internal)?,
            created_at: huiliu_domain::time::from_micros(created_us),
            analytics: AnalyticsSettings::default(),
        })
    }
}

/// The stored columns of a key joined with its app:
/// key_id, kind, secret_hash, then the app's seq, app_id, name, timezone, created_us, analytics.
pub type KeyColumns = (
    String,
    String,
    Vec<u8>,
    i64,
    String,
    String,
    String,
    i64,
    String,
);

impl KeyRecord {
    pub fn from_joined_columns(columns: KeyColumns) -> Result<Self, crate::StoreError> {
        let (key_id, kind, hash, seq, id, name, timezone, created_us, analytics) = columns;
        let app = AppRecord::from_row((seq, id, name, timezone, created_us, analytics))?;
        Self::from_columns(key_id, &kind, hash, app)
    }

    pub fn from_columns(
        key_id: String,
        kind: &str,
        secret_hash: Vec<u8>,
        app: AppRecord,
    ) -> Result<Self, crate::StoreError> {
        let kind = KeyKind::parse(kind)
            .ok_or_else(|| crate::StoreError::internal(format!("unknown key kind {kind:?}")))?;
        Ok(Self {
            key_id,
            kind,
            secret_hash,
            app,
        })
    }
}

/// The stored columns of a user row, in the order both backends select them.
pub type UserColumns = (
    String,         // user_id
    i64,            // user_index
    Option<String>, // openid
    Option<String>, // unionid
    String,         // attributes (JSON text)
    Option<i64>,    // first_us
    Option<i64>,    // last_us
    i64,            // event_count
    i64,            // created_us
);

impl UserRecord {
    pub fn from_columns(columns: UserColumns) -> Result<Self, crate::StoreError> {
        let (
            user_id,
            user_index,
            openid,
            unionid,
            attributes,
            first_us,
            last_us,
            event_count,
            created_us,
        ) = columns;
        let attributes = match serde_json::from_str::<Value>(&attributes) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(crate::StoreError::internal(
                    "stored attributes are not a JSON object",
                ))
            }
        };
        Ok(Self {
            user_id,
            user_index: u32::try_from(user_index).map_err(crate::StoreError::internal)?,
            openid,
            unionid,
            attributes,
            first_seen: first_us.map(huiliu_domain::time::from_micros),
            last_seen: last_us.map(huiliu_domain::time::from_micros),
            event_count,
            created_at: huiliu_domain::time::from_micros(created_us),
        })
    }
}

/// The stored columns of an event row joined with its user, in the order both backends select them.
pub type EventColumns = (String, String, String, i64, String, String, i64);

impl StoredEvent {
    pub fn from_columns(columns: EventColumns) -> Result<Self, crate::StoreError> {
        let (id, user_id, name, time_us, props, source, received_us) = columns;
        Ok(Self {
            id,
            user_id,
            name,
            time: huiliu_domain::time::from_micros(time_us),
            props,
            source: EventSource::parse(&source).ok_or_else(|| {
                crate::StoreError::internal(format!("unknown event source {source:?}"))
            })?,
            received_at: huiliu_domain::time::from_micros(received_us),
        })
    }
}

/// How far a reader of an app's activity index has read. Rows after `seq` are
/// new to it; on PostgreSQL, where a row's seq is taken before its transaction
/// commits, rows written by transactions that were still open at the last read
/// (transaction ids from `horizon` on) are read again, which is harmless because
/// applying a row twice changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivityCursor {
    pub generation: i64,
    pub seq: i64,
    pub horizon: i64,
}

/// Index rows read after a cursor. When `reset` is set the index was rebuilt
/// since the cursor was taken: the rows are the whole index and the reader
/// starts over from them.
#[derive(Debug, Clone, Default)]
pub struct ActivityRows {
    pub cursor: ActivityCursor,
    pub reset: bool,
    pub rows: Vec<DayBitmap>,
}

/// Where a rebuild of the activity index starts: index rows written by
/// transactions that had committed by then are replaced by the rebuild, later
/// ones are kept. Opaque to callers: a seq on SQLite, a transaction snapshot on
/// PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildMark(pub String);

/// An event as a rebuild of the activity index reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedEvent {
    pub seq: i64,
    pub user_index: u32,
    pub time_us: i64,
    pub name: String,
}

impl ScannedEvent {
    /// From the columns of [`SCAN_EVENTS`](crate::sql::SCAN_EVENTS): seq, user_index, time_us, name.
    pub fn from_columns((seq, user_index, time_us, name): (i64, i64, i64, String)) -> Self {
        Self {
            seq,
            user_index: user_index as u32,
            time_us,
            name,
        }
    }
}

/// A stored template definition, parsed back.
pub fn stored_template(
    (definition, disabled_reason): (String, Option<String>),
) -> Result<huiliu_domain::templates::Template, crate::StoreError> {
    let mut template: huiliu_domain::templates::Template =
        serde_json::from_str(&definition).map_err(crate::StoreError::internal)?;
    template.disabled_reason = disabled_reason;
    Ok(template)
}

/// An app's WeChat settings as stored: secrets sealed (see `huiliu_domain::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWechat {
    pub appid: String,
    pub secret_sealed: Vec<u8>,
    pub token_sealed: Option<Vec<u8>>,
    pub aes_key_sealed: Option<Vec<u8>>,
    pub api_base: Option<String>,
}

/// The columns of [`StoredWechat`], in its field order.
pub type WechatColumns = (
    String,
    Vec<u8>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
);

impl StoredWechat {
    pub fn from_columns(
        (appid, secret_sealed, token_sealed, aes_key_sealed, api_base): WechatColumns,
    ) -> Self {
        Self {
            appid,
            secret_sealed,
            token_sealed,
            aes_key_sealed,
            api_base,
        }
    }
}

/// A user's answers to subscription prompts, to record in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionReport {
    pub user_id: huiliu_domain::ids::UserId,
    /// (template id, the template's kind, the answer), in template-id order.
    pub answers: Vec<(
        String,
        huiliu_domain::templates::TemplateKind,
        huiliu_domain::credits::SubscribeResult,
    )>,
    /// Where the answers came from (the credit history's cause; acceptances
    /// reported by both paths count once).
    pub source: huiliu_domain::credits::AnswerSource,
    pub idempotency: Option<IdempotencyKey>,
}

/// What an idempotency key found stored before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earlier<T> {
    /// The same request: its first answer.
    Replay(T),
    /// Another request under the same key.
    KeyReused,
}

impl IdempotencyKey {
    /// Judges what was stored under this key (request hash, answer as JSON), if anything.
    pub fn earlier<T: serde::de::DeserializeOwned>(
        &self,
        stored: Option<(Vec<u8>, String)>,
    ) -> Result<Option<Earlier<T>>, crate::StoreError> {
        let Some((hash, response)) = stored else {
            return Ok(None);
        };
        Ok(Some(if hash == self.request_hash {
            Earlier::Replay(serde_json::from_str(&response).map_err(crate::StoreError::internal)?)
        } else {
            Earlier::KeyReused
        }))
    }
}

/// A client's idempotency key and a hash of its request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// Credits per template after recording (or as first recorded, on a replay).
pub type CreditBalances = std::collections::BTreeMap<String, u32>;

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now.
    Done(CreditBalances),
    /// The same key and body were recorded before: the first answer again.
    Replayed(CreditBalances),
    /// The key was used before with a different body.
    KeyReused,
}

/// One template's subscription of a user, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub template_id: String,
    pub state: huiliu_domain::credits::Subscription,
    /// One-time credits held by messages being sent (neither available nor spent).
    pub reserved: u32,
    pub updated_at: Timestamp,
}

/// An app's cached WeChat access token, sealed, with its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub token_sealed: Vec<u8>,
    pub expires_us: i64,
}

/// The stored columns a funnel reads: user_index, time_us, name, props (when fetched).
pub type FunnelColumns = (i64, i64, String, Option<String>);

/// Builds a funnel event from [`FunnelColumns`].
pub fn funnel_event(
    (user_index, time_us, name, props): FunnelColumns,
) -> Result<huiliu_domain::analytics::funnel::FunnelEvent, crate::StoreError> {
    let props = match props {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Some(map),
            _ => {
                return Err(crate::StoreError::internal(
                    "stored props are not a JSON object",
                ))
            }
        },
    };
    Ok(huiliu_domain::analytics::funnel::FunnelEvent {
        user: u32::try_from(user_index).map_err(crate::StoreError::internal)?,
        time_us,
        name,
        props,
    })
}

/// A row of [`LIST_SUBSCRIPTIONS`](crate::sql::LIST_SUBSCRIPTIONS): template_id, credits,
/// long_term, status, updated_us, reserved (all NULL for a user without subscriptions).
pub type SubscriptionColumns = (
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// A subscription's state from its stored columns.
pub fn subscription_state(
    credits: i64,
    long_term: bool,
    status: Option<&str>,
) -> Result<huiliu_domain::credits::Subscription, crate::StoreError> {
    Ok(huiliu_domain::credits::Subscription {
        credits: u32::try_from(credits).map_err(crate::StoreError::internal)?,
        long_term,
        status: status.map(parse_status).transpose()?,
    })
}

impl SubscriptionRecord {
    /// A user's subscriptions from the rows of
    /// [`LIST_SUBSCRIPTIONS`](crate::sql::LIST_SUBSCRIPTIONS); `None` for an unknown user.
    pub fn from_user_rows(
        rows: Vec<SubscriptionColumns>,
    ) -> Result<Option<Vec<Self>>, crate::StoreError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let mut records = Vec::with_capacity(rows.len());
        for (template_id, credits, long_term, status, updated_us, reserved) in rows {
            let Some(template_id) = template_id else {
                continue;
            };
            records.push(Self {
                template_id,
                state: subscription_state(
                    credits.unwrap_or(0),
                    long_term.unwrap_or(false),
                    status.as_deref(),
                )?,
                reserved: u32::try_from(reserved.unwrap_or(0))
                    .map_err(crate::StoreError::internal)?,
                updated_at: huiliu_domain::time::from_micros(updated_us.unwrap_or(0)),
            });
        }
        Ok(Some(records))
    }
}

/// A stored answer (`accept`, `reject`, `ban`).
pub fn parse_status(
    text: &str,
) -> Result<huiliu_domain::credits::SubscribeResult, crate::StoreError> {
    huiliu_domain::credits::SubscribeResult::parse(text, "status")
        .map_err(crate::StoreError::internal)
}

/// The other path whose unpaired report of the same acceptance an answer would
/// pair with: only one-time acceptances pair (a long-term one grants no count).
pub fn pairing_of(
    kind: huiliu_domain::templates::TemplateKind,
    result: huiliu_domain::credits::SubscribeResult,
    source: huiliu_domain::credits::AnswerSource,
) -> Option<huiliu_domain::credits::AnswerSource> {
    (kind == huiliu_domain::templates::TemplateKind::OneTime
        && result == huiliu_domain::credits::SubscribeResult::Accept)
        .then(|| source.pairs_with())
        .flatten()
}
