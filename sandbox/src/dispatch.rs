//! HTTP entry point: routes `POST /` to the SageMaker or EC2 front end by content type, reads
//! the account and region from the SigV4 credential scope, counts calls and injects faults.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use uuid::Uuid;

use crate::error::ApiError;
use crate::faults::Fault;
use crate::state::{CallOutcome, Scope, Shared};
use crate::{control, ec2, sagemaker};

/// Region used when a request carries no SigV4 `Authorization` header, as with plain curl.
const UNSIGNED_REGION: &str = "us-east-1";

/// Builds the router: AWS APIs on `POST /`, the control API under `/_sandbox/`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(handle_aws_request))
        .nest("/_sandbox", control::router())
        .with_state(shared)
}

/// The API and action a request is for.
enum Call {
    SageMaker { operation: String },
    Ec2 { action: String, params: ec2::Params },
    Unknown,
}

impl Call {
    fn action(&self) -> &str {
        match self {
            Call::SageMaker { operation } => operation,
            Call::Ec2 { action, .. } => action,
            Call::Unknown => "",
        }
    }
}

fn classify(headers: &HeaderMap, body: &[u8]) -> Call {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    if let Some(target) = header_str(headers, "x-amz-target") {
        let operation = target
            .strip_prefix("SageMaker.")
            .unwrap_or(target)
            .to_owned();
        return Call::SageMaker { operation };
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let params = ec2::Params::parse(body);
        let action = params.get("Action").unwrap_or_default().to_owned();
        return Call::Ec2 { action, params };
    }
    Call::Unknown
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Returns the access key id and region from `Credential=<AKID>/<date>/<region>/<service>/...`.
fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let authorization = header_str(headers, header::AUTHORIZATION.as_str())?;
    let credential = authorization.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    let mut parts = credential.split('/');
    let access_key_id = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    Some((access_key_id, region))
}

async fn handle_aws_request(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = Uuid::new_v4().to_string();
    let call = classify(&headers, &body);
    let (access_key_id, region) =
        credential_scope(&headers).unwrap_or_else(|| (String::new(), UNSIGNED_REGION.to_owned()));

    let (scope, fault, latency) = {
        let mut inner = shared.lock();
        let account = inner
            .topology
            .account_for_access_key(&access_key_id)
            .to_owned();
        let scope = Scope::new(account, region);
        let action = call.action();
        inner.record_call(&scope, action);
        (
            scope,
            inner.faults.pick(action),
            inner.faults.latency_for(action),
        )
    };

    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault == Some(Fault::Drop) {
        shared
            .lock()
            .record_outcome(&scope, call.action(), CallOutcome::Dropped);
        // Unwinding out of the handler ends hyper's connection task, so the client sees the
        // connection close without a response. `resume_unwind` skips the panic hook, so
        // nothing is printed.
        std::panic::resume_unwind(Box::new("sandbox dropped the connection on purpose"));
    }

    let outcome = |error: Option<&ApiError>| match (fault, error) {
        (Some(Fault::Throttle), _) => CallOutcome::Throttled,
        (Some(Fault::ServerError), _) => CallOutcome::ServerError,
        (_, Some(_)) => CallOutcome::Rejected,
        (_, None) => CallOutcome::Succeeded,
    };
    match call {
        Call::SageMaker { operation } => {
            let result = match fault.and_then(sagemaker_fault) {
                Some(error) => Err(error),
                None => {
                    let mut inner = shared.lock();
                    inner.settle(&scope, Utc::now());
                    sagemaker::handle(&mut inner, &scope, &operation, &body)
                }
            };
            log_call(&scope, &operation, &request_id, result.as_ref().err());
            shared
                .lock()
                .record_outcome(&scope, &operation, outcome(result.as_ref().err()));
            sagemaker::render(result, &request_id)
        }
        Call::Ec2 { action, params } => {
            let result = match fault.and_then(ec2_fault) {
                Some(error) => Err(error),
                None => {
                    let mut inner = shared.lock();
                    inner.settle(&scope, Utc::now());
                    ec2::handle(&inner, &scope, &action, &params, &request_id)
                }
            };
            log_call(&scope, &action, &request_id, result.as_ref().err());
            shared
                .lock()
                .record_outcome(&scope, &action, outcome(result.as_ref().err()));
            ec2::render(result, &request_id)
        }
        Call::Unknown => {
            let message = "expected a SageMaker request (x-amz-target header) or an EC2 Query \
                           request (application/x-www-form-urlencoded body)";
            tracing::debug!(request.id = %request_id, "unrecognized request");
            (StatusCode::BAD_REQUEST, message).into_response()
        }
    }
}

/// Returns the SageMaker error for an injected fault. The codes are the general AWS ones;
/// whether SageMaker uses exactly these is not documented.
fn sagemaker_fault(fault: Fault) -> Option<ApiError> {
    match fault {
        Fault::Throttle => Some(ApiError::client("ThrottlingException", "Rate exceeded")),
        Fault::ServerError => Some(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: "The request processing has failed because of an unknown error.".to_owned(),
        }),
        Fault::Drop => None,
    }
}

/// Returns the EC2 error for an injected fault.
fn ec2_fault(fault: Fault) -> Option<ApiError> {
    match fault {
        Fault::Throttle => Some(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "RequestLimitExceeded",
            message: "Request limit exceeded.".to_owned(),
        }),
        Fault::ServerError => Some(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: "An internal error has occurred".to_owned(),
        }),
        Fault::Drop => None,
    }
}

fn log_call(scope: &Scope, action: &str, request_id: &str, error: Option<&ApiError>) {
    match error {
        None => tracing::debug!(
            aws.account = %scope.account,
            aws.region = %scope.region,
            aws.action = action,
            request.id = request_id,
            "request succeeded"
        ),
        Some(error) => tracing::debug!(
            aws.account = %scope.account,
            aws.region = %scope.region,
            aws.action = action,
            request.id = request_id,
            error.code = error.code,
            error.message = %error.message,
            "request failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_scope_reads_key_and_region() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-west-2/sagemaker/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            credential_scope(&headers),
            Some(("AKIDEXAMPLE".to_owned(), "us-west-2".to_owned()))
        );
    }
}
