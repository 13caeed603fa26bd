//! Extractors whose rejections are the API's own problem responses.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::error::ApiError;
use crate::domain::{FieldError, truncate_for_message};

/// A JSON request body. Malformed JSON, a wrong field type and a missing content type are
/// rejected with a problem that explains the fix, and so are a compressed body and a
/// character set other than UTF-8, which axum would read as plain UTF-8.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers();
        // A second line of either header could make a proxy read the body differently from
        // the service, which reads the first.
        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
            if headers.get_all(&name).iter().nth(1).is_some() {
                let field = if name == header::CONTENT_TYPE {
                    "Content-Type"
                } else {
                    "Content-Encoding"
                };
                return Err(ApiError::BadRequest {
                    detail: format!("invalid {field} header: it was sent more than once"),
                    errors: vec![FieldError::new(field, "must be sent once")],
                });
            }
        }
        if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "this service does not decode Content-Encoding '{}'; send the body uncompressed",
                truncate_for_message(&String::from_utf8_lossy(encoding.as_bytes()))
            )));
        }
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<mime::Mime>().ok());
        // Like a repeated header, a repeated charset could be read differently elsewhere.
        if media_type.as_ref().is_some_and(|media_type| {
            media_type
                .params()
                .filter(|(name, _)| *name == mime::CHARSET)
                .nth(1)
                .is_some()
        }) {
            return Err(ApiError::BadRequest {
                detail: "invalid Content-Type header: it names charset more than once".to_owned(),
                errors: vec![FieldError::new(
                    "Content-Type",
                    "must name charset at most once",
                )],
            });
        }
        let charset = media_type
            .and_then(|mime| mime.get_param(mime::CHARSET).map(|c| c.as_str().to_owned()));
        if let Some(charset) = charset
            && !charset.eq_ignore_ascii_case("utf-8")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "JSON bodies must be UTF-8, but the Content-Type names charset '{}'; send UTF-8 with Content-Type: application/json",
                truncate_for_message(&charset)
            )));
        }
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// Path parameters. A value that does not parse is rejected with a problem that names the
/// parameter and what it must be.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                // A single value, such as `Path<Uuid>`, fails without a key. The route then
                // has only one parameter, so its name is the key.
                let only_name = RawPathParams::from_request_parts(parts, state)
                    .await
                    .ok()
                    .and_then(|params| {
                        let mut names = params.iter().map(|(name, _)| name.to_owned());
                        names.next().filter(|_| names.next().is_none())
                    });
                Err(path_problem(error.into_kind(), only_name))
            }
            Err(other) => Err(ApiError::BadRequest {
                detail: format!("invalid path parameter: {}", other.body_text()),
                errors: Vec::new(),
            }),
        }
    }
}

fn path_problem(kind: ErrorKind, only_name: Option<String>) -> ApiError {
    const UUID_REASON: &str = "must be a UUID such as 0b7e2c5e-3f4a-4d8e-9c1b-2a6f0e9d4c31";
    let reason_for_type = |expected_type: &str| {
        if expected_type.ends_with("Uuid") {
            UUID_REASON.to_owned()
        } else {
            "is not a valid value for this route".to_owned()
        }
    };
    let (name, value, reason) = match kind {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => (Some(key), value, reason_for_type(expected_type)),
        ErrorKind::ParseError {
            value,
            expected_type,
        }
        | ErrorKind::ParseErrorAtIndex {
            value,
            expected_type,
            ..
        } => (only_name, value, reason_for_type(expected_type)),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => {
            let reason = if message.contains("UUID") {
                UUID_REASON.to_owned()
            } else {
                "is not a valid value for this route".to_owned()
            };
            (Some(key), value, reason)
        }
        ErrorKind::InvalidUtf8InPathParam { key } => {
            (Some(key), String::new(), "must be UTF-8 text".to_owned())
        }
        other => {
            return ApiError::BadRequest {
                detail: format!("invalid path parameter: {other}"),
                errors: Vec::new(),
            };
        }
    };
    let name = name.unwrap_or_else(|| "path".to_owned());
    let echoed_value = truncate_for_message(&value);
    ApiError::BadRequest {
        detail: format!("invalid path parameter {name} '{echoed_value}': {reason}"),
        errors: vec![FieldError::new(name, reason)],
    }
}

/// Query parameters, rejected as a problem. A value with a NUL character is rejected too,
/// because PostgreSQL cannot store it in text.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(name) = parts.uri.query().and_then(parameter_with_nul) {
            let name = truncate_for_message(name);
            let reason = "must not contain a NUL character (%00)";
            return Err(ApiError::BadRequest {
                detail: format!("invalid query parameter {name}: {reason}"),
                errors: vec![FieldError::new(name, reason)],
            });
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Returns the name of the first query parameter whose value has an encoded NUL character.
fn parameter_with_nul(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        value.contains("%00").then_some(name)
    })
}

/// Splits serde's "path: message" text into a field error, where a path is present. Without
/// one, a message about a duplicate or unknown field names that field, as in
/// "duplicate field `limit`".
fn field_error_from(text: &str) -> Vec<FieldError> {
    if let Some(missing) = missing_field(text) {
        return vec![missing];
    }
    match text.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') && !path.is_empty() => {
            vec![FieldError::new(path, reason)]
        }
        _ => [
            ("duplicate field `", "is given more than once; send it once"),
            (
                "unknown field `",
                "is not a field of this request; see /docs for the fields",
            ),
        ]
        .iter()
        .find_map(|(prefix, reason)| {
            let (name, _) = text.strip_prefix(prefix)?.split_once('`')?;
            Some(vec![FieldError::new(truncate_for_message(name), *reason)])
        })
        .unwrap_or_default(),
    }
}

/// Names a missing required field by its whole path, as in `oidc_config.client_secret`, from
/// serde's "oidc_config: missing field `client_secret` at line 1 column 80".
fn missing_field(text: &str) -> Option<FieldError> {
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') && !path.is_empty() => (Some(path), message),
        _ => (None, text),
    };
    // serde_json's whole message is "missing field `NAME` at line L column C". Anything after
    // it means that the text came from elsewhere, such as a map key in the path.
    let (name, position) = message.strip_prefix("missing field `")?.split_once('`')?;
    let (line, column) = position.strip_prefix(" at line ")?.split_once(" column ")?;
    if !line
        .bytes()
        .chain(column.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let field = match path {
        Some(path) => format!("{path}.{name}"),
        None => name.to_owned(),
    };
    Some(FieldError::new(
        truncate_for_message(&field),
        "is required; see /docs for the fields of this request",
    ))
}

/// Removes the value that serde quotes after "invalid type: " or "invalid value: ", as in
/// "invalid type: integer `42`, expected a string" or "invalid type: string \"...\", expected
/// struct OidcConfigRequest". The value may be a client secret, or an object that contains
/// one, sent in the wrong place. The kind of value and what was expected stay in the message.
fn without_sent_value(text: &str) -> String {
    let mut rest = text;
    let mut cleaned = String::with_capacity(text.len());
    while let Some(start) = ["invalid type: ", "invalid value: "]
        .iter()
        .filter_map(|prefix| rest.find(prefix).map(|at| at + prefix.len()))
        .min()
    {
        cleaned.push_str(&rest[..start]);
        rest = &rest[start..];
        // The kind ends where the quoted value begins; serde writes no value for a map, a
        // sequence or null.
        let Some(expected) = rest.rfind(", expected ") else {
            break;
        };
        let sent = &rest[..expected];
        let kind_end = sent.find([' ', '`', '"']).map_or(sent.len(), |at| {
            // "floating point `1.5`" has a space inside its kind.
            if sent.starts_with("floating point") {
                "floating point".len()
            } else {
                at
            }
        });
        cleaned.push_str(&sent[..kind_end]);
        rest = &rest[expected..];
    }
    cleaned.push_str(rest);
    cleaned
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "the request body must be JSON sent with the header Content-Type: application/json"
                    .to_owned(),
            ),
            JsonRejection::JsonDataError(error) => {
                let inner = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let inner = without_sent_value(&inner);
                ApiError::BadRequest {
                    detail: format!("the JSON body does not match the expected schema: {inner}"),
                    errors: field_error_from(&inner),
                }
            }
            JsonRejection::JsonSyntaxError(error) => {
                let inner = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                ApiError::BadRequest {
                    detail: format!("the request body is not valid JSON: {inner}"),
                    errors: Vec::new(),
                }
            }
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge
            }
            other => ApiError::BadRequest {
                detail: format!("the request body could not be read: {}", other.body_text()),
                errors: Vec::new(),
            },
        }
    }
}

/// Returns the valid form of a numeric, time or id query parameter, for a value that does not
/// parse. serde's own message, such as "invalid digit found in string", gives no range.
fn expected_query_form(parameter: &str) -> Option<String> {
    match parameter {
        "limit" => Some(format!(
            "a whole number from 1 to {}",
            super::pagination::MAX_LIMIT
        )),
        "wait" => Some(format!(
            "a whole number of seconds from 0 to {}",
            super::operations::MAX_WAIT.as_secs()
        )),
        "since" | "until" => Some("an RFC 3339 time, such as 2026-01-01T00:00:00Z".to_owned()),
        "operation_id" => Some("a UUID, such as 3f1c7d7e-2c1b-4a8e-9c55-0d6f5a1b2c3d".to_owned()),
        "through" => Some("a whole number of 1 or more".to_owned()),
        // Only the operation list parses its status; the workforce list checks its own.
        "status" => Some("one of pending, running, succeeded and failed".to_owned()),
        _ => None,
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let reason = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_owned();
        let mut errors = field_error_from(&reason);
        // Only a value that failed to parse, not a repeated or unknown parameter.
        if let [error] = errors.as_mut_slice()
            && reason.starts_with(&format!("{}: ", error.field))
            && let Some(form) = expected_query_form(&error.field)
        {
            // serde names the value of an unknown enum variant, such as a status.
            let rejected = reason
                .split_once("unknown variant `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(value, _)| value);
            error.reason = match rejected {
                Some(value) => format!("'{value}' is not {form}"),
                None => format!("must be {form}"),
            };
            return ApiError::BadRequest {
                detail: format!("invalid query parameter {}: {}", error.field, error.reason),
                errors,
            };
        }
        ApiError::BadRequest {
            detail: format!("invalid query parameter: {reason}"),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{missing_field, without_sent_value};

    #[test]
    fn sent_value_is_not_repeated() {
        let cases = [
            (
                "oidc_config.client_secret: invalid type: integer `-99887766`, expected a string at line 1 column 80",
                "oidc_config.client_secret: invalid type: integer, expected a string at line 1 column 80",
            ),
            (
                "invalid type: string \"{\\\"client_secret\\\": \\\"s3cr3t, expected x\\\"}\", expected struct OidcConfigRequest at line 1 column 60",
                "invalid type: string, expected struct OidcConfigRequest at line 1 column 60",
            ),
            (
                "limit: invalid value: floating point `1.5`, expected u32",
                "limit: invalid value: floating point, expected u32",
            ),
            (
                "oidc_config: invalid type: sequence, expected struct OidcConfigRequest",
                "oidc_config: invalid type: sequence, expected struct OidcConfigRequest",
            ),
            // Field names that serde lists are not values, and stay.
            (
                "cognito_config.client_secret: unknown field `client_secret`, expected `user_pool` or `client_id`",
                "cognito_config.client_secret: unknown field `client_secret`, expected `user_pool` or `client_id`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(without_sent_value(text), expected, "{text}");
        }
    }

    #[test]
    fn missing_field_names_whole_path() {
        let error = missing_field("oidc_config: missing field `client_secret` at line 1 column 80");
        assert_eq!(
            error.map(|e| e.field),
            Some("oidc_config.client_secret".to_owned())
        );
    }

    #[test]
    fn missing_field_ignores_text_in_map_key() {
        let text = "params.x: missing field `evil`: invalid type: integer `1`, expected a string at line 1 column 9";
        assert!(missing_field(text).is_none());
    }
}
