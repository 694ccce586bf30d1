//! The error envelope of the public contract, and the one place errors become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use huiliu_domain::FieldError;
use huiliu_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {"code", "message", "field"?}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// A machine-readable code, a sentence for people and, when one input is at fault, its path.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    #[schema(example = "invalid_time")]
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "events[3].time")]
    pub field: Option<String>,
}

impl From<&FieldError> for ErrorBody {
    fn from(error: &FieldError) -> Self {
        Self {
            code: error.code.to_string(),
            message: error.message.clone(),
            field: error.field.clone(),
        }
    }
}

/// An error answer: status plus envelope.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    /// A rule broken by the input: 422 naming the field.
    pub fn invalid(error: &FieldError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: error.into(),
        }
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 `idempotency_key_reused`: the key came with another request before.
    pub fn key_reused() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency key was used with a different request",
        )
        .with_field("idempotency_key")
    }

    /// 404 `unknown_user`: huiliu has never seen this user in the app.
    pub fn unknown_user(user_id: &huiliu_domain::ids::UserId) -> Self {
        Self::not_found(
            "unknown_user",
            format!("no user {:?} in this app", user_id.as_str()),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(field_error) => ApiError::invalid(&field_error),
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is not answering; nothing was written, retry later",
                )
            }
            StoreError::Config(cause) | StoreError::Internal(cause) => {
                // The cause may name tables or paths: it goes to the log, not to the client.
                tracing::error!(%cause, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; nothing was written",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorEnvelope { error: self.body })).into_response()
    }
}
