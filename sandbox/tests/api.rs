//! Drives the sandbox over loopback HTTP the way the AWS SDK clients do.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use workforce_sandbox::{Delays, SandboxConfig, SandboxHandle, start};

const VPC: &str = "vpc-0a10000000000000a";
const SECOND_VPC: &str = "vpc-0b10000000000000b";
const SUBNET_A: &str = "subnet-0a10000000000001a";
const SUBNET_B: &str = "subnet-0a10000000000002a";
const SUBNET_UNSUPPORTED: &str = "subnet-0a10000000000004a";
const SECOND_SUBNET: &str = "subnet-0b10000000000001b";
const SG: &str = "sg-0a10000000000001a";

struct TestSandbox {
    handle: SandboxHandle,
    client: reqwest::Client,
}

/// A SageMaker or EC2 response: status, content type and body.
struct Reply {
    status: StatusCode,
    content_type: String,
    request_id: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

async fn spawn(delays: Delays) -> TestSandbox {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SandboxConfig {
        delays,
        ..SandboxConfig::default()
    };
    let handle = start(config, listener).await.unwrap();
    TestSandbox {
        handle,
        client: reqwest::Client::new(),
    }
}

fn authorization(region: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20240101/{region}/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

impl TestSandbox {
    async fn sagemaker_in(&self, region: &str, operation: &str, body: Value) -> Reply {
        let response = self
            .client
            .post(self.handle.endpoint_url())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("SageMaker.{operation}"))
            .header("authorization", authorization(region, "sagemaker"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        reply(response).await
    }

    async fn sagemaker(&self, operation: &str, body: Value) -> Reply {
        self.sagemaker_in("us-east-1", operation, body).await
    }

    async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Reply {
        let mut form = vec![("Action", action), ("Version", "2016-11-15")];
        form.extend_from_slice(params);
        let response = self
            .client
            .post(self.handle.endpoint_url())
            .header("authorization", authorization("us-east-1", "ec2"))
            .form(&form)
            .send()
            .await
            .unwrap();
        reply(response).await
    }

    async fn describe(&self, name: &str) -> Reply {
        self.sagemaker("DescribeWorkforce", json!({ "WorkforceName": name }))
            .await
    }

    async fn status(&self, name: &str) -> String {
        self.describe(name).await.json()["Workforce"]["Status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn create_cognito(&self, name: &str, vpc: Option<Value>) -> Reply {
        let mut body = json!({
            "WorkforceName": name,
            "CognitoConfig": { "UserPool": "us-east-1_abc123", "ClientId": "client" },
        });
        if let Some(vpc) = vpc {
            body["WorkforceVpcConfig"] = vpc;
        }
        self.sagemaker("CreateWorkforce", body).await
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let request_id = header("x-amzn-requestid");
    Reply {
        status: response.status(),
        content_type,
        request_id,
        body: response.text().await.unwrap(),
    }
}

fn vpc_config(subnets: &[&str]) -> Value {
    json!({ "VpcId": VPC, "SecurityGroupIds": [SG], "Subnets": subnets })
}

fn oidc_config() -> Value {
    json!({
        "ClientId": "client",
        "ClientSecret": "secret",
        "Issuer": "https://idp.example.com",
        "AuthorizationEndpoint": "https://idp.example.com/authorize",
        "TokenEndpoint": "https://idp.example.com/token",
        "UserInfoEndpoint": "https://idp.example.com/userinfo",
        "LogoutEndpoint": "https://idp.example.com/logout",
        "JwksUri": "https://idp.example.com/jwks",
    })
}

fn assert_sagemaker_error(reply: &Reply, code: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "body: {}",
        reply.body
    );
    assert_eq!(reply.content_type, "application/x-amz-json-1.1");
    assert_eq!(reply.json()["__type"], code, "body: {}", reply.body);
}

/// Returns the text of the first `<tag>` element.
fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

fn assert_ec2_error(reply: &Reply, code: &str, message: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "body: {}",
        reply.body
    );
    assert_eq!(reply.content_type, "text/xml;charset=UTF-8");
    assert!(
        reply.body.contains("<Response><Errors><Error>"),
        "{}",
        reply.body
    );
    assert_eq!(xml_text(&reply.body, "Code"), Some(code));
    assert_eq!(xml_text(&reply.body, "Message"), Some(message));
    assert!(xml_text(&reply.body, "RequestID").is_some());
}

#[tokio::test]
async fn invalid_name_gets_coral_validation_message() {
    let sandbox = spawn(Delays::instant()).await;
    let reply = sandbox.create_cognito("-bad", None).await;
    assert_sagemaker_error(&reply, "ValidationException");
    assert_eq!(
        reply.json()["Message"],
        "1 validation error detected: Value '-bad' at 'workforceName' failed to satisfy \
         constraint: Member must satisfy regular expression pattern: \
         [a-zA-Z0-9]([a-zA-Z0-9\\-]){0,62}"
    );
    assert!(reply.request_id.is_some());
}

#[tokio::test]
async fn several_violations_are_counted_and_joined() {
    let sandbox = spawn(Delays::instant()).await;
    let reply = sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({
                "CognitoConfig": { "UserPool": "us-east-1_abc", "ClientId": "c" },
                "IpAddressType": "ipv5",
                "SourceIpConfig": { "Cidrs": ["10.0.0.0/33"] },
                "WorkforceVpcConfig": { "VpcId": VPC, "SecurityGroupIds": [], "Subnets": [SUBNET_A] },
            }),
        )
        .await;
    assert_sagemaker_error(&reply, "ValidationException");
    let message = reply.json()["Message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("4 validation errors detected: "),
        "{message}"
    );
    assert!(message.contains(
        "Value null at 'workforceName' failed to satisfy constraint: Member must not be null"
    ));
    assert!(message.contains("; Value 'ipv5' at 'ipAddressType'"));
    assert!(message.contains("at 'sourceIpConfig.cidrs.1.member'"));
    assert!(message.contains(
        "Value '[]' at 'workforceVpcConfig.securityGroupIds' failed to satisfy constraint: \
         Member must have length greater than or equal to 1"
    ));
}

#[tokio::test]
async fn list_sizes_and_cidr_count_are_limited() {
    let sandbox = spawn(Delays::instant()).await;
    let cidrs: Vec<String> = (1..=11).map(|n| format!("10.0.{n}.0/24")).collect();
    let groups: Vec<String> = (1..=6).map(|n| format!("sg-{n}")).collect();
    let reply = sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({
                "WorkforceName": "wf",
                "CognitoConfig": { "UserPool": "us-east-1_abc", "ClientId": "c" },
                "SourceIpConfig": { "Cidrs": cidrs },
                "WorkforceVpcConfig": { "VpcId": VPC, "SecurityGroupIds": groups, "Subnets": [SUBNET_A] },
            }),
        )
        .await;
    let message = reply.json()["Message"].as_str().unwrap().to_owned();
    assert!(message.contains("'sourceIpConfig.cidrs' failed to satisfy constraint: Member must have length less than or equal to 10"));
    assert!(message.contains("'workforceVpcConfig.securityGroupIds' failed to satisfy constraint: Member must have length less than or equal to 5"));
}

#[tokio::test]
async fn oidc_endpoints_must_be_https() {
    let sandbox = spawn(Delays::instant()).await;
    let mut oidc = oidc_config();
    oidc["TokenEndpoint"] = json!("http://idp.example.com/token");
    let reply = sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({ "WorkforceName": "wf", "OidcConfig": oidc }),
        )
        .await;
    assert_sagemaker_error(&reply, "ValidationException");
    let message = reply.json()["Message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("at 'oidcConfig.tokenEndpoint'"),
        "{message}"
    );
    assert!(message.contains("https://\\S+"), "{message}");
}

#[tokio::test]
async fn create_needs_exactly_one_identity_provider() {
    let sandbox = spawn(Delays::instant()).await;
    let neither = sandbox
        .sagemaker("CreateWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_sagemaker_error(&neither, "ValidationException");
    let both = sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({
                "WorkforceName": "wf",
                "CognitoConfig": { "UserPool": "us-east-1_abc", "ClientId": "c" },
                "OidcConfig": oidc_config(),
            }),
        )
        .await;
    assert_sagemaker_error(&both, "ValidationException");
}

#[tokio::test]
async fn second_workforce_in_region_is_rejected() {
    let sandbox = spawn(Delays::instant()).await;
    let first = sandbox.create_cognito("wf", None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.json()["WorkforceArn"],
        "arn:aws:sagemaker:us-east-1:123456789012:workforce/wf"
    );
    let second = sandbox.create_cognito("other", None).await;
    assert_sagemaker_error(&second, "ValidationException");
    assert_eq!(
        second.json()["Message"],
        "Cannot create more than one workforce for account 123456789012. If you are trying to \
         update existing workforce, please use UpdateWorkforce API"
    );
    let west = sandbox
        .sagemaker_in(
            "us-west-2",
            "CreateWorkforce",
            json!({
                "WorkforceName": "other",
                "CognitoConfig": { "UserPool": "us-west-2_abc", "ClientId": "c" },
            }),
        )
        .await;
    assert_eq!(west.status, StatusCode::OK, "{}", west.body);
}

#[tokio::test]
async fn missing_workforce_is_validation_error() {
    let sandbox = spawn(Delays::instant()).await;
    for operation in ["DescribeWorkforce", "DeleteWorkforce", "UpdateWorkforce"] {
        let reply = sandbox
            .sagemaker(operation, json!({ "WorkforceName": "ghost" }))
            .await;
        assert_sagemaker_error(&reply, "ValidationException");
        assert_eq!(
            reply.json()["Message"],
            "No workforce found with name ghost."
        );
    }
}

#[tokio::test]
async fn describe_shows_defaults_and_hides_secret() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({ "WorkforceName": "wf", "OidcConfig": oidc_config() }),
        )
        .await;
    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert_eq!(workforce["Status"], "Active");
    assert_eq!(workforce["SourceIpConfig"], json!({ "Cidrs": [] }));
    assert_eq!(workforce["IpAddressType"], "ipv4");
    assert!(workforce["CreateDate"].is_f64());
    assert!(workforce["OidcConfig"].get("ClientSecret").is_none());
    assert_eq!(
        workforce["OidcConfig"]["JwksUri"],
        "https://idp.example.com/jwks"
    );
    assert!(workforce.get("WorkforceVpcConfig").is_none());
    let sub_domain = workforce["SubDomain"].as_str().unwrap();
    let (label, rest) = sub_domain.split_once('.').unwrap();
    assert_eq!(rest, "labeling.us-east-1.sagemaker.aws");
    assert_eq!(label.len(), 10);
    assert!(
        label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
}

#[tokio::test]
async fn transitional_statuses_block_update_and_delete() {
    let sandbox = spawn(Delays::uniform(Duration::from_secs(600))).await;
    sandbox.create_cognito("wf", None).await;
    assert_eq!(sandbox.status("wf").await, "Initializing");

    let update = sandbox
        .sagemaker(
            "UpdateWorkforce",
            json!({ "WorkforceName": "wf", "SourceIpConfig": { "Cidrs": [] } }),
        )
        .await;
    assert_sagemaker_error(&update, "ConflictException");
    let delete = sandbox
        .sagemaker("DeleteWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_sagemaker_error(&delete, "ConflictException");
}

#[tokio::test]
async fn lifecycle_with_vpc_creates_and_removes_endpoint() {
    let sandbox = spawn(Delays::instant()).await;
    let created = sandbox
        .create_cognito("wf", Some(vpc_config(&[SUBNET_A, SUBNET_B])))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);

    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert_eq!(workforce["Status"], "Active");
    let endpoint_id = workforce["WorkforceVpcConfig"]["VpcEndpointId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(endpoint_id.starts_with("vpce-"));

    let endpoints = sandbox
        .ec2("DescribeVpcEndpoints", &[("VpcEndpointId.1", &endpoint_id)])
        .await;
    assert_eq!(endpoints.status, StatusCode::OK);
    assert_eq!(xml_text(&endpoints.body, "state"), Some("available"));
    assert_eq!(
        xml_text(&endpoints.body, "vpcEndpointType"),
        Some("Interface")
    );
    assert_eq!(xml_text(&endpoints.body, "requesterManaged"), Some("true"));
    assert_eq!(
        xml_text(&endpoints.body, "serviceName"),
        Some("com.amazonaws.us-east-1.sagemaker.labeling")
    );
    assert!(endpoints.body.contains(&format!("<item>{SUBNET_B}</item>")));

    let update = sandbox
        .sagemaker(
            "UpdateWorkforce",
            json!({ "WorkforceName": "wf", "WorkforceVpcConfig": {} }),
        )
        .await;
    assert_eq!(update.json()["Workforce"]["Status"], "Updating");
    let deleting = sandbox
        .ec2(
            "DescribeVpcEndpoints",
            &[
                ("Filter.1.Name", "vpc-endpoint-id"),
                ("Filter.1.Value.1", &endpoint_id),
            ],
        )
        .await;
    // The first request after a zero-length transition settles it, so the endpoint is gone.
    assert!(!deleting.body.contains(&endpoint_id), "{}", deleting.body);
    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert_eq!(workforce["Status"], "Active");
    assert!(workforce.get("WorkforceVpcConfig").is_none());
}

#[tokio::test]
async fn endpoint_pending_until_active() {
    let sandbox = spawn(Delays::uniform(Duration::from_secs(600))).await;
    sandbox
        .create_cognito("wf", Some(vpc_config(&[SUBNET_A])))
        .await;
    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert!(
        workforce["WorkforceVpcConfig"]
            .get("VpcEndpointId")
            .is_none()
    );
    let filter = [
        ("Filter.1.Name", "vpc-endpoint-type"),
        ("Filter.1.Value.1", "Interface"),
    ];
    let pending = sandbox.ec2("DescribeVpcEndpoints", &filter).await;
    assert_eq!(xml_text(&pending.body, "state"), Some("pending"));

    // New delays apply to transitions that start later, not to the running one.
    sandbox.handle.set_delays(Delays::instant());
    assert_eq!(sandbox.status("wf").await, "Initializing");
}

#[tokio::test]
async fn replacing_vpc_config_replaces_endpoint() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox
        .create_cognito("wf", Some(vpc_config(&[SUBNET_A])))
        .await;
    let first =
        sandbox.describe("wf").await.json()["Workforce"]["WorkforceVpcConfig"]["VpcEndpointId"]
            .clone();
    sandbox
        .sagemaker(
            "UpdateWorkforce",
            json!({ "WorkforceName": "wf", "WorkforceVpcConfig": vpc_config(&[SUBNET_B]) }),
        )
        .await;
    let second =
        sandbox.describe("wf").await.json()["Workforce"]["WorkforceVpcConfig"]["VpcEndpointId"]
            .clone();
    assert_ne!(first, second);
    let all = sandbox
        .ec2(
            "DescribeVpcEndpoints",
            &[
                ("Filter.1.Name", "vpc-endpoint-type"),
                ("Filter.1.Value.1", "Interface"),
            ],
        )
        .await;
    assert!(!all.body.contains(first.as_str().unwrap()));
    assert!(all.body.contains(second.as_str().unwrap()));
}

#[tokio::test]
async fn delete_removes_workforce_and_endpoint() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox
        .create_cognito("wf", Some(vpc_config(&[SUBNET_A])))
        .await;
    assert_eq!(sandbox.status("wf").await, "Active");
    let delete = sandbox
        .sagemaker("DeleteWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_eq!(delete.status, StatusCode::OK);
    let describe = sandbox.describe("wf").await;
    assert_sagemaker_error(&describe, "ValidationException");
    let endpoints = sandbox
        .ec2(
            "DescribeVpcEndpoints",
            &[
                ("Filter.1.Name", "vpc-endpoint-type"),
                ("Filter.1.Value.1", "Interface"),
            ],
        )
        .await;
    assert!(!endpoints.body.contains("<item>"), "{}", endpoints.body);
}

#[tokio::test]
async fn unsupported_zone_ends_failed() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox
        .create_cognito("wf", Some(vpc_config(&[SUBNET_A, SUBNET_UNSUPPORTED])))
        .await;
    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert_eq!(workforce["Status"], "Failed");
    let reason = workforce["FailureReason"].as_str().unwrap();
    assert!(reason.contains(SUBNET_UNSUPPORTED), "{reason}");
    assert!(reason.contains("use1-az3"), "{reason}");
    let delete = sandbox
        .sagemaker("DeleteWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.body);
}

#[tokio::test]
async fn forced_failure_applies_to_next_transition() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox.create_cognito("wf", None).await;
    assert_eq!(sandbox.status("wf").await, "Active");
    sandbox
        .handle
        .fail_next_transition("us-east-1", "wf", "injected failure");
    sandbox
        .sagemaker(
            "UpdateWorkforce",
            json!({ "WorkforceName": "wf", "SourceIpConfig": { "Cidrs": ["1.1.1.1/32"] } }),
        )
        .await;
    let workforce = sandbox.describe("wf").await.json()["Workforce"].clone();
    assert_eq!(workforce["Status"], "Failed");
    assert_eq!(workforce["FailureReason"], "injected failure");
    assert_eq!(workforce["SourceIpConfig"]["Cidrs"], json!(["1.1.1.1/32"]));
}

#[tokio::test]
async fn stuck_workforce_stays_transitional() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox.handle.set_stuck("us-east-1", "wf", true);
    sandbox.create_cognito("wf", None).await;
    assert_eq!(sandbox.status("wf").await, "Initializing");
    sandbox.handle.set_stuck("us-east-1", "wf", false);
    assert_eq!(sandbox.status("wf").await, "Active");
}

#[tokio::test]
async fn network_ids_must_exist_and_match_vpc() {
    let sandbox = spawn(Delays::instant()).await;
    let cases = [
        (
            json!({ "VpcId": "vpc-123", "SecurityGroupIds": [SG], "Subnets": [SUBNET_A] }),
            "vpc-123",
        ),
        (
            json!({ "VpcId": VPC, "SecurityGroupIds": [SG], "Subnets": ["subnet-404"] }),
            "subnet-404",
        ),
        (
            json!({ "VpcId": VPC, "SecurityGroupIds": [SG], "Subnets": [SECOND_SUBNET] }),
            SECOND_SUBNET,
        ),
        (
            json!({ "VpcId": VPC, "SecurityGroupIds": ["sg-0b10000000000001b"], "Subnets": [SUBNET_A] }),
            "sg-0b10000000000001b",
        ),
        (
            json!({ "VpcId": SECOND_VPC, "SecurityGroupIds": [SG], "Subnets": [SECOND_SUBNET] }),
            SG,
        ),
    ];
    for (config, named_id) in cases {
        let reply = sandbox.create_cognito("wf", Some(config)).await;
        assert_sagemaker_error(&reply, "ValidationException");
        let message = reply.json()["Message"].as_str().unwrap().to_owned();
        assert!(message.contains(named_id), "{message}");
    }
}

#[tokio::test]
async fn work_teams_block_delete_and_oidc_update() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox
        .sagemaker(
            "CreateWorkforce",
            json!({ "WorkforceName": "wf", "OidcConfig": oidc_config() }),
        )
        .await;
    let team = sandbox
        .sagemaker(
            "CreateWorkteam",
            json!({
                "WorkteamName": "team",
                "WorkforceName": "wf",
                "Description": "labelers",
                "MemberDefinitions": [{ "OidcMemberDefinition": { "Groups": ["labelers"] } }],
            }),
        )
        .await;
    assert_eq!(team.status, StatusCode::OK, "{}", team.body);

    let delete = sandbox
        .sagemaker("DeleteWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_sagemaker_error(&delete, "ResourceInUse");
    let update = sandbox
        .sagemaker(
            "UpdateWorkforce",
            json!({ "WorkforceName": "wf", "OidcConfig": oidc_config() }),
        )
        .await;
    assert_sagemaker_error(&update, "ValidationException");

    let described = sandbox
        .sagemaker("DescribeWorkteam", json!({ "WorkteamName": "team" }))
        .await;
    assert_eq!(described.json()["Workteam"]["WorkteamName"], "team");
    let listed = sandbox.sagemaker("ListWorkteams", json!({})).await;
    assert_eq!(listed.json()["Workteams"].as_array().unwrap().len(), 1);
    let removed = sandbox
        .sagemaker("DeleteWorkteam", json!({ "WorkteamName": "team" }))
        .await;
    assert_eq!(removed.json(), json!({ "Success": true }));
    let missing = sandbox
        .sagemaker("DescribeWorkteam", json!({ "WorkteamName": "team" }))
        .await;
    assert_sagemaker_error(&missing, "ValidationException");
    assert!(
        missing.json()["Message"]
            .as_str()
            .unwrap()
            .starts_with("The work team")
    );

    let delete = sandbox
        .sagemaker("DeleteWorkforce", json!({ "WorkforceName": "wf" }))
        .await;
    assert_eq!(delete.status, StatusCode::OK);
}

#[tokio::test]
async fn list_workforces_filters_and_pages() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox.create_cognito("wf-one", None).await;
    let all = sandbox.sagemaker("ListWorkforces", json!({})).await;
    assert_eq!(all.json()["Workforces"][0]["WorkforceName"], "wf-one");
    let none = sandbox
        .sagemaker("ListWorkforces", json!({ "NameContains": "zzz" }))
        .await;
    assert_eq!(none.json()["Workforces"], json!([]));
    let bad = sandbox
        .sagemaker(
            "ListWorkforces",
            json!({ "MaxResults": 0, "SortBy": "Size" }),
        )
        .await;
    assert!(
        bad.json()["Message"]
            .as_str()
            .unwrap()
            .starts_with("2 validation errors")
    );
}

#[tokio::test]
async fn ec2_not_found_errors() {
    let sandbox = spawn(Delays::instant()).await;
    let vpcs = sandbox
        .ec2(
            "DescribeVpcs",
            &[("VpcId.1", VPC), ("VpcId.2", "vpc-0ffffffffffffffff")],
        )
        .await;
    assert_ec2_error(
        &vpcs,
        "InvalidVpcID.NotFound",
        "The vpc ID 'vpc-0ffffffffffffffff' does not exist",
    );
    let subnets = sandbox
        .ec2("DescribeSubnets", &[("SubnetId.1", "subnet-0fffffff")])
        .await;
    assert_ec2_error(
        &subnets,
        "InvalidSubnetID.NotFound",
        "The subnet ID 'subnet-0fffffff' does not exist",
    );
    let groups = sandbox
        .ec2(
            "DescribeSecurityGroups",
            &[("GroupId.1", "sg-0ffffffffffffffff")],
        )
        .await;
    assert_ec2_error(
        &groups,
        "InvalidGroup.NotFound",
        "The security group 'sg-0ffffffffffffffff' does not exist",
    );
    let endpoints = sandbox
        .ec2(
            "DescribeVpcEndpoints",
            &[("VpcEndpointId.1", "vpce-0ffffffffffffffff")],
        )
        .await;
    assert_ec2_error(
        &endpoints,
        "InvalidVpcEndpointId.NotFound",
        "The Vpc Endpoint Id 'vpce-0ffffffffffffffff' does not exist",
    );
    let attribute = sandbox
        .ec2(
            "DescribeVpcAttribute",
            &[
                ("VpcId", "vpc-0ffffffffffffffff"),
                ("Attribute", "enableDnsSupport"),
            ],
        )
        .await;
    assert_ec2_error(
        &attribute,
        "InvalidVpcID.NotFound",
        "The vpc ID 'vpc-0ffffffffffffffff' does not exist",
    );
}

/// An id that does not have EC2's form (prefix, hyphen, 8 or 17 lowercase hex digits) gets the
/// `.Malformed` code instead of `.NotFound`.
#[tokio::test]
async fn ec2_malformed_id_errors() {
    let sandbox = spawn(Delays::instant()).await;
    let cases = [
        ("DescribeVpcs", "VpcId.1", "vpc-x", "InvalidVpcID.Malformed"),
        (
            "DescribeSubnets",
            "SubnetId.1",
            "subnet-ZZ",
            "InvalidSubnetID.Malformed",
        ),
        (
            "DescribeSecurityGroups",
            "GroupId.1",
            "sg-",
            "InvalidGroupId.Malformed",
        ),
        (
            "DescribeVpcEndpoints",
            "VpcEndpointId.1",
            "vpce-!!",
            "InvalidVpcEndpointId.Malformed",
        ),
        (
            "DescribeRouteTables",
            "RouteTableId.1",
            "rtb-0123",
            "InvalidRouteTableId.Malformed",
        ),
    ];
    for (action, parameter, id, code) in cases {
        let response = sandbox.ec2(action, &[(parameter, id)]).await;
        let prefix = id.split('-').next().unwrap();
        let message = format!("Invalid id: \"{id}\" (expecting \"{prefix}-...\")");
        assert_ec2_error(&response, code, &message);
    }
    let attribute = sandbox
        .ec2(
            "DescribeVpcAttribute",
            &[("VpcId", "not-a-vpc"), ("Attribute", "enableDnsSupport")],
        )
        .await;
    assert_ec2_error(
        &attribute,
        "InvalidVpcID.Malformed",
        "Invalid id: \"not-a-vpc\" (expecting \"vpc-...\")",
    );
}

#[tokio::test]
async fn ec2_describes_built_in_topology() {
    let sandbox = spawn(Delays::instant()).await;
    let vpcs = sandbox.ec2("DescribeVpcs", &[("VpcId.1", VPC)]).await;
    assert_eq!(vpcs.content_type, "text/xml;charset=UTF-8");
    assert!(
        vpcs.body
            .contains("<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">")
    );
    assert!(xml_text(&vpcs.body, "requestId").is_some());
    assert_eq!(xml_text(&vpcs.body, "cidrBlock"), Some("10.0.0.0/16"));

    let hostnames = sandbox
        .ec2(
            "DescribeVpcAttribute",
            &[("VpcId", SECOND_VPC), ("Attribute", "enableDnsHostnames")],
        )
        .await;
    assert!(
        hostnames
            .body
            .contains("<enableDnsHostnames><value>false</value></enableDnsHostnames>")
    );

    let subnet = sandbox
        .ec2("DescribeSubnets", &[("SubnetId.1", SUBNET_UNSUPPORTED)])
        .await;
    assert_eq!(
        xml_text(&subnet.body, "availabilityZone"),
        Some("us-east-1e")
    );
    assert_eq!(
        xml_text(&subnet.body, "availabilityZoneId"),
        Some("use1-az3")
    );

    let s3 = sandbox
        .ec2(
            "DescribeVpcEndpoints",
            &[
                ("Filter.1.Name", "vpc-id"),
                ("Filter.1.Value.1", VPC),
                ("Filter.2.Name", "service-name"),
                ("Filter.2.Value.1", "com.amazonaws.us-east-1.s3"),
            ],
        )
        .await;
    assert_eq!(
        xml_text(&s3.body, "vpcEndpointId"),
        Some("vpce-0a1000000000000s3")
    );
    assert!(
        s3.body
            .contains("<routeTableIdSet><item>rtb-0a10000000000001a</item></routeTableIdSet>")
    );

    let tables = sandbox
        .ec2(
            "DescribeRouteTables",
            &[
                ("Filter.1.Name", "association.subnet-id"),
                ("Filter.1.Value.1", SUBNET_B),
            ],
        )
        .await;
    assert_eq!(
        xml_text(&tables.body, "routeTableId"),
        Some("rtb-0a10000000000001a")
    );
    let no_tables = sandbox
        .ec2(
            "DescribeRouteTables",
            &[
                ("Filter.1.Name", "association.subnet-id"),
                ("Filter.1.Value.1", SECOND_SUBNET),
            ],
        )
        .await;
    assert!(no_tables.body.contains("<routeTableSet></routeTableSet>"));

    let services = sandbox
        .ec2(
            "DescribeVpcEndpointServices",
            &[(
                "ServiceName.1",
                "com.amazonaws.us-east-1.sagemaker.labeling",
            )],
        )
        .await;
    assert!(services.body.contains("<item>us-east-1a</item>"));
    assert!(!services.body.contains("<item>us-east-1e</item>"));

    let groups = sandbox
        .ec2(
            "DescribeSecurityGroups",
            &[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", VPC)],
        )
        .await;
    assert_eq!(groups.body.matches("<groupId>").count(), 2);
}

#[tokio::test]
async fn ec2_pagination_walks_all_subnets() {
    let sandbox = spawn(Delays::instant()).await;
    let first = sandbox.ec2("DescribeSubnets", &[("MaxResults", "5")]).await;
    assert_eq!(first.body.matches("<subnetId>").count(), 5);
    // The built-in region has five subnets, so a page of five ends the listing.
    assert!(xml_text(&first.body, "nextToken").is_none());

    let first = sandbox
        .ec2("DescribeVpcEndpointServices", &[("MaxResults", "1")])
        .await;
    let token = xml_text(&first.body, "nextToken").unwrap().to_owned();
    let second = sandbox
        .ec2(
            "DescribeVpcEndpointServices",
            &[("MaxResults", "1"), ("NextToken", &token)],
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_ne!(
        xml_text(&first.body, "serviceName"),
        xml_text(&second.body, "serviceName")
    );
    assert!(xml_text(&second.body, "nextToken").is_none());

    let bad = sandbox.ec2("DescribeVpcs", &[("MaxResults", "2")]).await;
    assert_eq!(xml_text(&bad.body, "Code"), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn calls_are_counted_and_faults_injected() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox.describe("wf").await;
    sandbox.ec2("DescribeVpcs", &[]).await;
    sandbox.ec2("DescribeVpcs", &[]).await;
    assert_eq!(sandbox.handle.call_count("DescribeWorkforce"), 1);
    assert_eq!(sandbox.handle.call_count("DescribeVpcs"), 2);

    let url = format!("{}/_sandbox/calls", sandbox.handle.endpoint_url());
    let counts: Value = sandbox
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["123456789012"]["us-east-1"]["DescribeVpcs"], 2);

    let faults_url = format!("{}/_sandbox/faults", sandbox.handle.endpoint_url());
    let set = sandbox
        .client
        .put(&faults_url)
        .json(&json!({ "throttle_ratio": 1.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let throttled = sandbox.describe("wf").await;
    assert_sagemaker_error(&throttled, "ThrottlingException");
    let limited = sandbox.ec2("DescribeVpcs", &[]).await;
    assert_eq!(limited.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        xml_text(&limited.body, "Code"),
        Some("RequestLimitExceeded")
    );

    let health = sandbox
        .client
        .get(format!("{}/_sandbox/health", sandbox.handle.endpoint_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let reset = sandbox.client.delete(&url).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(sandbox.handle.call_count("DescribeVpcs"), 0);
}

#[tokio::test]
async fn control_api_fails_workforce_transition() {
    let sandbox = spawn(Delays::uniform(Duration::from_secs(600))).await;
    sandbox.create_cognito("wf", None).await;
    let base = sandbox.handle.endpoint_url();
    let fail = sandbox
        .client
        .post(format!("{base}/_sandbox/workforces/fail"))
        .json(&json!({ "region": "us-east-1", "name": "wf", "reason": "boom" }))
        .send()
        .await
        .unwrap();
    assert_eq!(fail.status(), StatusCode::NO_CONTENT);
    let delays = sandbox
        .client
        .put(format!("{base}/_sandbox/delays"))
        .json(&json!({ "initializing_ms": 0, "updating_ms": 0, "deleting_ms": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(delays.status(), StatusCode::OK);
    // The running transition keeps the end time it started with.
    assert_eq!(sandbox.status("wf").await, "Initializing");
}

#[tokio::test]
async fn dropped_connection_leaves_server_running() {
    let sandbox = spawn(Delays::instant()).await;
    sandbox.handle.set_faults(workforce_sandbox::Faults {
        drop_ratio: 1.0,
        actions: Some(vec!["DescribeVpcs".to_owned()]),
        ..Default::default()
    });
    let dropped = sandbox
        .client
        .post(sandbox.handle.endpoint_url())
        .header("authorization", authorization("us-east-1", "ec2"))
        .form(&[("Action", "DescribeVpcs"), ("Version", "2016-11-15")])
        .send()
        .await;
    assert!(dropped.is_err());
    let other = sandbox.ec2("DescribeSubnets", &[]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(sandbox.handle.call_count("DescribeVpcs"), 1);
}

#[tokio::test]
async fn access_key_selects_account() {
    let mut topology = workforce_sandbox::Topology::built_in();
    topology
        .access_keys
        .insert("AKIDOTHER".to_owned(), "210987654321".to_owned());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SandboxConfig {
        topology,
        delays: Delays::instant(),
        ..SandboxConfig::default()
    };
    let handle = start(config, listener).await.unwrap();
    let create = reqwest::Client::new()
        .post(handle.endpoint_url())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "SageMaker.CreateWorkforce")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDOTHER/20240101/us-east-1/sagemaker/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(
            json!({
                "WorkforceName": "wf",
                "CognitoConfig": { "UserPool": "us-east-1_abc", "ClientId": "c" },
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let body: Value = create.json().await.unwrap();
    assert_eq!(
        body["WorkforceArn"],
        "arn:aws:sagemaker:us-east-1:210987654321:workforce/wf"
    );
    let counts = handle.call_counts();
    assert_eq!(counts["210987654321"]["us-east-1"]["CreateWorkforce"], 1);
}
