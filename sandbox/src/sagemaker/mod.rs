//! SageMaker front end (AWS JSON 1.1): operation dispatch, request parsing and response
//! rendering.

mod shapes;
mod workforce;
mod workteam;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{Inner, Scope};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Runs one SageMaker operation against the state of `scope`.
pub fn handle(
    inner: &mut Inner,
    scope: &Scope,
    operation: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    match operation {
        "CreateWorkforce" => workforce::create(inner, scope, parse(body)?),
        "DescribeWorkforce" => workforce::describe(inner, scope, parse(body)?),
        "ListWorkforces" => workforce::list(inner, scope, parse(body)?),
        "UpdateWorkforce" => workforce::update(inner, scope, parse(body)?),
        "DeleteWorkforce" => workforce::delete(inner, scope, parse(body)?),
        "CreateWorkteam" => workteam::create(inner, scope, parse(body)?),
        "DescribeWorkteam" => workteam::describe(inner, scope, parse(body)?),
        "ListWorkteams" => workteam::list(inner, scope, parse(body)?),
        "DeleteWorkteam" => workteam::delete(inner, scope, parse(body)?),
        _ => Err(ApiError::client(
            "UnknownOperationException",
            format!("The sandbox does not implement the SageMaker operation '{operation}'."),
        )),
    }
}

/// Parses a JSON request body; an empty body counts as `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        ApiError::client(
            "SerializationException",
            format!("Failed to parse the request body: {error}"),
        )
    })
}

/// Renders a result with the AWS JSON 1.1 content type and a request id.
pub fn render(result: Result<Value, ApiError>, request_id: &str) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (
            error.status,
            json!({ "__type": error.code, "Message": error.message }),
        ),
    };
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    response
}

/// Converts a timestamp to epoch seconds with milliseconds, the JSON 1.1 timestamp form.
fn epoch_seconds(time: chrono::DateTime<chrono::Utc>) -> Value {
    // Millisecond counts stay far below 2^53, so the conversion to f64 is exact.
    #[expect(clippy::cast_precision_loss, reason = "milliseconds fit in 53 bits")]
    let seconds = time.timestamp_millis() as f64 / 1000.0;
    json!(seconds)
}
