//! EC2 front end (EC2 Query protocol): form parameters in, XML out.

mod describe;
mod params;
mod xml;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use params::Params;

use crate::error::ApiError;
use crate::state::{Inner, Scope};

const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";

/// The EC2 API version the sandbox speaks, from the `Version` request parameter.
const API_VERSION: &str = "2016-11-15";

/// Runs one EC2 action and returns the XML response body.
pub fn handle(
    inner: &Inner,
    scope: &Scope,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    if params.get("DryRun") == Some("true") {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_FAILED,
            code: "DryRunOperation",
            message: "Request would have succeeded, but DryRun flag is set.".to_owned(),
        });
    }
    let mut out = xml::Xml::response(action, request_id);
    match action {
        "DescribeVpcs" => describe::vpcs(inner, scope, params, &mut out)?,
        "DescribeVpcAttribute" => describe::vpc_attribute(inner, scope, params, &mut out)?,
        "DescribeSubnets" => describe::subnets(inner, scope, params, &mut out)?,
        "DescribeSecurityGroups" => describe::security_groups(inner, scope, params, &mut out)?,
        "DescribeVpcEndpoints" => describe::vpc_endpoints(inner, scope, params, &mut out)?,
        "DescribeRouteTables" => describe::route_tables(inner, scope, params, &mut out)?,
        "DescribeVpcEndpointServices" => {
            describe::vpc_endpoint_services(inner, scope, params, &mut out)?;
        }
        "" => {
            return Err(ApiError::client(
                "MissingAction",
                "The request must contain the parameter Action",
            ));
        }
        _ => {
            return Err(ApiError::client(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            ));
        }
    }
    Ok(out.finish(action))
}

/// Renders a result as EC2 XML with the EC2 content type.
pub fn render(result: Result<String, ApiError>, request_id: &str) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (error.status, xml::error_body(&error, request_id)),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    response
}
