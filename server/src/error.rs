//! API errors: each becomes a status and a JSON body `{error, message, ...}` that
//! says what is wrong and how to fix it; internals never reach the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ordo_engine::engine;
use ordo_engine::model::Diagnostic;
use ordo_engine::runtime::{self, form::FieldError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or an unknown token.
    #[error(
        "sign in first: send `Authorization: Bearer <token>` (create one with `ordo token create --user NAME`)"
    )]
    Unauthenticated,
    /// The caller's roles do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing the caller may see has this name.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The definition has errors.
    #[error("the definition has {} error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Invalid(Vec<Diagnostic>),
    /// The form has errors, one per field.
    #[error("the form has {} error(s)", .0.len())]
    Form(Vec<FieldError>),
    /// The request is well formed but cannot be done as asked.
    #[error("{0}")]
    Unprocessable(String),
    /// Values (start variables, a message's payload) do not fit their
    /// declarations: every problem, each naming its field path.
    #[error("{message}")]
    InvalidValues {
        /// `invalid_variables` or `invalid_message`.
        code: &'static str,
        /// A summary.
        message: String,
        /// Each problem (`lead.source must be one of …`).
        problems: Vec<String>,
    },
    /// Someone else changed it first.
    #[error("{0}")]
    Conflict(String),
    /// A failure on our side; the details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

/// Diagnostic codes that mean the body is not YAML text at all.
const MALFORMED: &[&str] = &["yaml-syntax", "yaml-invalid", "not-utf8"];

impl ApiError {
    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // Text that is not YAML at all is a malformed request; YAML that is
            // not a valid process is unprocessable. Both carry their diagnostics.
            ApiError::Invalid(d) if d.iter().any(|x| MALFORMED.contains(&x.code)) => {
                (StatusCode::BAD_REQUEST, "malformed_definition")
            }
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition"),
            ApiError::Form(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_form"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::InvalidValues { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What kind of error: `unauthenticated`, `forbidden`, `not_found`,
    /// `bad_request`, `malformed_definition`, `invalid_definition`,
    /// `invalid_form`, `invalid_variables`, `invalid_message`, `unprocessable`,
    /// `conflict` or `internal`.
    pub error: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// The definition's problems (`malformed_definition`, `invalid_definition`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<Diagnostic>>,
    /// The form's problems, field by field (`invalid_form`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
    /// Values that do not fit their declarations, each naming its field path
    /// (`invalid_variables`, `invalid_message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let mut body = ErrorBody {
            error: code.to_owned(),
            message: self.to_string(),
            diagnostics: None,
            fields: None,
            problems: None,
        };
        match &self {
            ApiError::Invalid(d) => body.diagnostics = Some(d.clone()),
            ApiError::Form(f) => body.fields = Some(f.clone()),
            ApiError::InvalidValues { problems, .. } => body.problems = Some(problems.clone()),
            ApiError::Internal(detail) => {
                // Logged for the operator; the client only learns that it failed.
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("ordo: internal error: {detail}");
                }
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        match e {
            E::Invalid(d) => ApiError::Invalid(d),
            E::UnknownProcess(p) => ApiError::NotFound(format!("process `{p}` is not deployed")),
            E::UnknownInstance(i) => ApiError::NotFound(format!("instance `{i}` does not exist")),
            E::Conflict { .. } => ApiError::Conflict(e.to_string()),
            E::Runtime(runtime::Error::Form(f)) => ApiError::Form(f),
            E::Runtime(runtime::Error::UnknownActivity(a) | runtime::Error::NoIncident(a)) => {
                ApiError::NotFound(format!("activity {a} is not waiting in this instance"))
            }
            E::Runtime(runtime::Error::Variables(problems)) => ApiError::InvalidValues {
                code: "invalid_variables",
                message: format!("invalid variables: {}", problems.join("; ")),
                problems,
            },
            E::InvalidMessage { name, problems } => ApiError::InvalidValues {
                code: "invalid_message",
                message: format!(
                    "message `{name}` is refused, nothing was done: {}",
                    problems.join("; ")
                ),
                problems,
            },
            E::NotAllowed(m) => ApiError::Forbidden(m),
            // A value the database cannot take (a NUL character on
            // PostgreSQL, a number past 64 bits): the request's fault.
            E::Store(ordo_engine::store::Error::Parameter(m)) => ApiError::BadRequest(m),
            E::Runtime(r) => ApiError::Unprocessable(r.to_string()),
            E::Store(_) | E::CommitFailed(_) | E::Closed | E::Panicked(_) | E::Migration { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<crate::auth::Error> for ApiError {
    fn from(e: crate::auth::Error) -> Self {
        match e {
            crate::auth::Error::Store(ordo_engine::store::Error::Parameter(m)) => {
                ApiError::BadRequest(m)
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}
