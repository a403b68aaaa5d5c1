//! The OpenAI HTTP error envelope, `{"error": {"message", "type", "param", "code"}}` (all four
//! keys always present, `param`/`code` nullable), as one [`ApiError`] that every handler returns.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an API client in OpenAI's envelope.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_owned),
            code: code.map(str::to_owned),
            headers: Vec::new(),
        }
    }

    /// The 404 for an unknown response id.
    pub fn response_not_found(id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("Response with id '{id}' not found."),
            kind: "invalid_request_error",
            param: None,
            code: None,
            headers: Vec::new(),
        }
    }

    /// A 400 for a body that is not a JSON object.
    pub fn bad_json(detail: &str) -> Self {
        Self::invalid(
            format!(
                "We could not parse the JSON body of your request. (HINT: This likely means you \
                 aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
                 but what was sent was not valid JSON. If you have trouble figuring out how to \
                 fix this, please contact us through our help center at help.openai.com.) \
                 ({detail})"
            ),
            None,
            None,
        )
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        (self.status, headers, axum::Json(body)).into_response()
    }
}
