//! Classification of SDK errors into what the caller does next.

use aws_sdk_sagemaker::config::http::HttpResponse;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::operation::RequestId;

/// An AWS call that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    /// The workforce does not exist (SageMaker returns `ValidationException` "No workforce").
    #[error("workforce not found: {message}")]
    NotFound {
        message: String,
        request_id: Option<String>,
    },
    /// Throttling, a 5xx response, a timeout or a broken connection. The SDK does not retry,
    /// so that the call budget counts every attempt. Worth trying again later.
    #[error("transient AWS failure ({code}): {message}")]
    Transient {
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// AWS rejected the request (validation, conflict, resource in use, access denied). Trying
    /// the same request again will not help.
    #[error("AWS rejected the request ({code}): {message}")]
    Rejected {
        code: String,
        message: String,
        request_id: Option<String>,
    },
}

/// Error codes that mean "slow down" across SageMaker and EC2, as the SDK's retry classifier
/// lists them.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Codes of transient failures without an error response from AWS, after which the call may
/// still be applied.
const NO_RESPONSE_CODES: [&str; 3] = ["Timeout", "DispatchFailure", "ResponseError"];

impl AwsError {
    /// Returns whether AWS sent an error response, so that the failed call is known to have
    /// ended without a change. A timeout or a broken connection leaves that open.
    pub fn has_error_response(&self) -> bool {
        match self {
            Self::Transient { code, .. } => !NO_RESPONSE_CODES.contains(&code.as_str()),
            _ => true,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::NotFound { .. } => "WorkforceNotFound",
            Self::Transient { code, .. } | Self::Rejected { code, .. } => code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotFound { message, .. }
            | Self::Transient { message, .. }
            | Self::Rejected { message, .. } => message,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::NotFound { request_id, .. }
            | Self::Transient { request_id, .. }
            | Self::Rejected { request_id, .. } => request_id.as_deref(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Classifies an SDK error. `not_found` decides whether a service error means that the
    /// resource is missing.
    pub(crate) fn from_sdk<E>(
        error: SdkError<E, HttpResponse>,
        not_found: impl Fn(&str, &str) -> bool,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        SdkError<E, HttpResponse>: RequestId,
    {
        let request_id = error.request_id().map(str::to_owned);
        match &error {
            SdkError::ServiceError(context) => {
                let code = context.err().code().unwrap_or("Unknown").to_owned();
                let message = context.err().message().unwrap_or_default().to_owned();
                let status = context.raw().status().as_u16();
                if not_found(&code, &message) {
                    Self::NotFound {
                        message,
                        request_id,
                    }
                } else if THROTTLING_CODES.contains(&code.as_str()) || status >= 500 {
                    Self::Transient {
                        code,
                        message,
                        request_id,
                    }
                } else {
                    Self::Rejected {
                        code,
                        message,
                        request_id,
                    }
                }
            }
            SdkError::TimeoutError(_) => Self::Transient {
                code: "Timeout".to_owned(),
                message: "the AWS call timed out".to_owned(),
                request_id,
            },
            SdkError::DispatchFailure(_) => Self::Transient {
                code: "DispatchFailure".to_owned(),
                message: "the request could not be sent to AWS".to_owned(),
                request_id,
            },
            SdkError::ResponseError(_) => Self::Transient {
                code: "ResponseError".to_owned(),
                message: "the AWS response could not be read".to_owned(),
                request_id,
            },
            _ => {
                let code = error.code().unwrap_or("Unknown").to_owned();
                let message = error.message().unwrap_or("the AWS call failed").to_owned();
                Self::Transient {
                    code,
                    message,
                    request_id,
                }
            }
        }
    }
}
