//! Reading path parameters and JSON request bodies with the contract's limits and error shapes.

use crate::api::error::ApiError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;

/// One path parameter as text; a value that is not UTF-8 is a JSON 400, not axum's plain text.
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathText(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    rejection.body_text(),
                )
            })
    }
}

/// Reads the whole body, refusing more than `limit` bytes with 413 — at once when the
/// declared length is already too large, rather than after waiting for it.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// The body as UTF-8 text, 400 otherwise.
pub fn as_utf8(bytes: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_encoding",
            format!(
                "the body is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Maps a serde_json failure: broken JSON is 400, well-formed JSON of the wrong shape is 422.
pub fn json_error(error: &serde_json::Error, default_field: &str) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {error}"),
        ),
        Category::Data => {
            let message = error.to_string();
            let field = backticked_name(&message, "unknown field `")
                .or_else(|| backticked_name(&message, "missing field `"))
                .unwrap_or(default_field);
            let code = if message.starts_with("unknown field") {
                "unknown_field"
            } else if message.starts_with("missing field") {
                "missing_field"
            } else {
                "invalid_type"
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()).with_field(field)
        }
    }
}

fn backticked_name<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &message[message.find(marker)? + marker.len()..];
    Some(&rest[..rest.find('`')?])
}

/// The query string as name/value pairs, for handlers that validate each
/// parameter themselves (and name it in their errors).
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    /// Refuses parameters outside `known`, naming the first unknown one.
    pub fn only(self, known: &[&str]) -> Result<Self, ApiError> {
        if let Some((name, _)) = self
            .0
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_parameter",
                format!(
                    "unknown parameter {name:?}; this endpoint takes {}",
                    known.join(", ")
                ),
            )
            .with_field(name.clone()));
        }
        if let Some((name, _)) = self
            .0
            .iter()
            .enumerate()
            .find(|(i, (name, _))| self.0[..*i].iter().any(|(n, _)| n == name))
            .map(|(_, pair)| pair)
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "duplicate_parameter",
                format!("parameter {name:?} is given more than once"),
            )
            .with_field(name.clone()));
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(pairs)| QueryParams(pairs))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    rejection.body_text(),
                )
            })
    }
}

/// A JSON object from a body's bytes: 400 when it is not JSON, 422 when not an object.
fn object_of(bytes: &Bytes) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_str(as_utf8(bytes)?).map_err(|e| json_error(&e, "body"))? {
        serde_json::Value::Object(object) => Ok(object),
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            "the body is a JSON object",
        )
        .with_field("body")),
    }
}

/// 422 naming the first field outside `allowed`.
fn only_allowed(
    object: serde_json::Map<String, serde_json::Value>,
    allowed: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            format!("unknown field {unknown:?}"),
        )
        .with_field(unknown.clone())),
        None => Ok(object),
    }
}

/// A request body that must be a JSON object with only the `allowed` fields:
/// 400 when it is not JSON, 422 naming the body or the first unknown field.
pub async fn json_object(
    body: Body,
    limit: usize,
    allowed: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    only_allowed(json_object_any(body, limit).await?, allowed)
}

/// A request body that must be a JSON object, any fields (a typed reader
/// names the unknown ones): 400 when it is not JSON.
pub async fn json_object_any(
    body: Body,
    limit: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    object_of(&read_body(body, limit).await?)
}

/// Like [`json_object`], but an empty body is an empty object (for actions
/// whose fields are all optional).
pub async fn json_object_or_empty(
    body: Body,
    limit: usize,
    allowed: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    only_allowed(object_of(&bytes)?, allowed)
}

/// A typed value from JSON: 422 with `code`, naming the path of the first
/// field that does not fit (`tiers[2].threshold`).
pub fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    code: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            e.inner().to_string(),
        )
        .with_field(field)
    })
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Takes `user_id` from a JSON body: 422 naming it when missing or not a valid id.
pub fn take_user_id(
    body: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<huiliu_domain::ids::UserId, ApiError> {
    match body.remove("user_id") {
        Some(serde_json::Value::String(id)) => {
            huiliu_domain::ids::UserId::parse(id).map_err(|e| ApiError::invalid(&e))
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            "user_id is a string",
        )
        .with_field("user_id")),
    }
}

/// Takes an optional `idempotency_key` from a JSON body: 1–255 characters.
pub fn take_idempotency_key(
    body: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Option<String>, ApiError> {
    match body.remove("idempotency_key") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(key))
            if !key.is_empty() && key.chars().count() <= MAX_IDEMPOTENCY_KEY_CHARS =>
        {
            Ok(Some(key))
        }
        Some(_) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_idempotency_key",
            format!("1–{MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        )
        .with_field("idempotency_key")),
    }
}

/// [`take_idempotency_key`] for writes that cannot be retried safely without one.
pub fn require_idempotency_key(
    body: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<String, ApiError> {
    take_idempotency_key(body)?.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            "idempotency_key is required: a retry with the same key never counts twice",
        )
        .with_field("idempotency_key")
    })
}
