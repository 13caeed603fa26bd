//! VPC prerequisite checks: the check endpoint, the rejection of changes that fail them, the
//! worker's re-check before SageMaker is called, the endpoint view, and a run against moto.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use workforce_sandbox::topology::{DEFAULT_ACCOUNT, RegionTopology, RouteTable, Subnet};
use workforce_sandbox::{Faults, Topology};

use crate::support::*;

/// EC2 actions that the checks and the endpoint view send.
const EC2_ACTIONS: [&str; 7] = [
    "DescribeVpcs",
    "DescribeVpcAttribute",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "DescribeRouteTables",
    "DescribeVpcEndpoints",
    "DescribeVpcEndpointServices",
];

/// A subnet of the second built-in VPC, which has DNS hostnames off and no S3 endpoint.
const OTHER_VPC: &str = "vpc-0b10000000000000b";
const OTHER_SUBNET: &str = "subnet-0b10000000000001b";
const OTHER_SG: &str = "sg-0b10000000000001b";

/// Replaces the sandbox topology with the built-in one after `change` edits its us-east-1.
fn set_topology(app: &TestApp, change: impl FnOnce(&mut RegionTopology)) {
    let mut topology = Topology::built_in();
    let account = topology
        .accounts
        .get_mut(DEFAULT_ACCOUNT)
        .expect("default account");
    change(account.regions.get_mut(REGION).expect("us-east-1"));
    app.sandbox()
        .set_topology(topology)
        .expect("the topology is consistent");
}

async fn check(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let (status, _, result) = app
        .request(
            Method::POST,
            &format!("/v1/regions/{REGION}/vpc-config-checks"),
            Some(body),
        )
        .await;
    (status, result)
}

/// Runs the checks, expects a 200, and returns `(code, severity, resource_id)` per finding.
async fn findings(app: &TestApp, body: Value) -> Vec<(String, String, String)> {
    let (status, result) = check(app, body).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let findings = result["findings"].as_array().expect("findings");
    let has_error = findings.iter().any(|f| f["severity"] == "error");
    assert_eq!(result["passed"], !has_error, "{result}");
    findings
        .iter()
        .map(|f| {
            for member in ["message", "remedy"] {
                assert!(
                    !f[member].as_str().unwrap_or_default().is_empty(),
                    "{member} is empty: {f}"
                );
            }
            (
                f["code"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
                f["resource_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn finding(code: &str, severity: &str, resource_id: &str) -> (String, String, String) {
    (code.to_owned(), severity.to_owned(), resource_id.to_owned())
}

fn codes(found: &[(String, String, String)]) -> Vec<&str> {
    found.iter().map(|(code, _, _)| code.as_str()).collect()
}

fn config(vpc_id: &str, groups: &[&str], subnets: &[&str]) -> Value {
    json!({"vpc_id": vpc_id, "security_group_ids": groups, "subnets": subnets})
}

fn healthy_config() -> Value {
    config(VPC, &[SG_1, SG_2], &[SUBNET_A, SUBNET_B, SUBNET_C])
}

fn throttle_ec2() -> Faults {
    Faults {
        throttle_ratio: 1.0,
        actions: Some(EC2_ACTIONS.iter().map(|a| a.to_string()).collect()),
        ..Default::default()
    }
}

#[tokio::test]
async fn healthy_config_passes_with_only_a_note() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let found = findings(&app, healthy_config()).await;
    assert_eq!(found, [finding("vpc_task_types_limited", "info", VPC)]);
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn checks_use_one_call_per_resource_type() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    app.sandbox().reset_call_counts();
    findings(&app, healthy_config()).await;
    let sandbox = app.sandbox();
    assert_eq!(sandbox.call_count("DescribeVpcs"), 1);
    assert_eq!(
        sandbox.call_count("DescribeVpcAttribute"),
        2,
        "one call per attribute"
    );
    assert_eq!(sandbox.call_count("DescribeSubnets"), 1);
    assert_eq!(sandbox.call_count("DescribeSecurityGroups"), 1);
    assert_eq!(
        sandbox.call_count("DescribeRouteTables"),
        2,
        "explicit associations and the main table"
    );
    assert_eq!(sandbox.call_count("DescribeVpcEndpoints"), 1);
    assert_eq!(sandbox.call_count("DescribeVpcEndpointServices"), 1);
}

#[tokio::test]
async fn unknown_ids_are_reported_one_by_one() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let missing_subnet = "subnet-0a1000000000000ffa";
    let missing_group = "sg-0a1000000000000ffa";
    let found = findings(
        &app,
        config(VPC, &[SG_1, missing_group], &[SUBNET_A, missing_subnet]),
    )
    .await;
    assert!(
        found.contains(&finding("subnet_not_found", "error", missing_subnet)),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("security_group_not_found", "error", missing_group)),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(_, _, id)| id == SUBNET_A || id == SG_1),
        "known ids have no findings: {found:?}"
    );

    let missing_vpc = "vpc-0a1000000000000ffa";
    let found = findings(&app, config(missing_vpc, &[SG_1], &[SUBNET_A])).await;
    assert!(
        found.contains(&finding("vpc_not_found", "error", missing_vpc)),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("subnet_in_other_vpc", "error", SUBNET_A)),
        "{found:?}"
    );
}

#[tokio::test]
async fn resources_of_another_vpc_are_errors() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let found = findings(
        &app,
        config(VPC, &[SG_1, OTHER_SG], &[SUBNET_A, OTHER_SUBNET]),
    )
    .await;
    assert!(
        found.contains(&finding("subnet_in_other_vpc", "error", OTHER_SUBNET)),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("security_group_in_other_vpc", "error", OTHER_SG)),
        "{found:?}"
    );
    assert!(!codes(&found).contains(&"subnet_not_found"), "{found:?}");
}

#[tokio::test]
async fn dns_hostnames_off_is_an_error() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let found = findings(&app, config(OTHER_VPC, &[OTHER_SG], &[OTHER_SUBNET])).await;
    assert!(
        found.contains(&finding("vpc_dns_hostnames_disabled", "error", OTHER_VPC)),
        "{found:?}"
    );
    assert!(
        !codes(&found).contains(&"vpc_dns_support_disabled"),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("s3_endpoint_missing", "warning", OTHER_VPC)),
        "{found:?}"
    );
}

#[tokio::test]
async fn dns_support_off_is_an_error() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    set_topology(&app, |region| region.vpcs[0].enable_dns_support = false);
    let found = findings(&app, healthy_config()).await;
    assert!(
        found.contains(&finding("vpc_dns_support_disabled", "error", VPC)),
        "{found:?}"
    );
    assert!(
        !codes(&found).contains(&"vpc_dns_hostnames_disabled"),
        "{found:?}"
    );
}

#[tokio::test]
async fn pending_vpc_and_subnet_are_errors() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    set_topology(&app, |region| {
        region.vpcs[0].state = "pending".to_owned();
        region.subnets[1].state = "pending".to_owned();
    });
    let found = findings(&app, healthy_config()).await;
    assert!(
        found.contains(&finding("vpc_not_available", "error", VPC)),
        "{found:?}"
    );
    assert!(
        found.contains(&finding("subnet_not_available", "error", SUBNET_B)),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(code, _, id)| code == "subnet_not_available" && id != SUBNET_B),
        "{found:?}"
    );
}

#[tokio::test]
async fn second_subnet_in_one_zone_is_an_error() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let twin = "subnet-0a10000000000005a";
    set_topology(&app, |region| {
        let mut subnet: Subnet = region.subnets[0].clone();
        subnet.subnet_id = twin.to_owned();
        subnet.cidr_block = "10.0.5.0/24".to_owned();
        region.subnets.push(subnet);
        region.route_tables[0].subnet_ids.push(twin.to_owned());
    });
    let found = findings(&app, config(VPC, &[SG_1], &[SUBNET_A, twin])).await;
    assert!(
        found.contains(&finding("duplicate_availability_zone", "error", twin)),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(code, _, id)| code == "duplicate_availability_zone" && id == SUBNET_A),
        "{found:?}"
    );
}

#[tokio::test]
async fn unsupported_zone_is_an_error() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let found = findings(
        &app,
        config(VPC, &[SG_1], &[SUBNET_A, SUBNET_UNSUPPORTED_AZ]),
    )
    .await;
    assert!(
        found.contains(&finding(
            "availability_zone_unsupported",
            "error",
            SUBNET_UNSUPPORTED_AZ
        )),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(code, _, id)| code == "availability_zone_unsupported" && id == SUBNET_A),
        "{found:?}"
    );
}

#[tokio::test]
async fn zone_id_table_replaces_the_endpoint_service() {
    let extra_args = vec!["--supported-az-ids=us-east-1=use1-az1,use1-az3".to_owned()];
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args,
        ..Default::default()
    })
    .await;
    app.sandbox().reset_call_counts();
    let found = findings(
        &app,
        config(VPC, &[SG_1], &[SUBNET_A, SUBNET_B, SUBNET_UNSUPPORTED_AZ]),
    )
    .await;
    let unsupported: Vec<&str> = found
        .iter()
        .filter(|(code, _, _)| code == "availability_zone_unsupported")
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(unsupported, [SUBNET_B], "use1-az2 is not in the table");
    assert_eq!(app.sandbox().call_count("DescribeVpcEndpointServices"), 0);
}

#[tokio::test]
async fn unknown_portal_service_is_a_warning() {
    let extra_args =
        vec!["--portal-endpoint-service-name=com.amazonaws.{region}.not-a-service".to_owned()];
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args,
        ..Default::default()
    })
    .await;
    let found = findings(
        &app,
        config(VPC, &[SG_1], &[SUBNET_A, SUBNET_UNSUPPORTED_AZ]),
    )
    .await;
    let service = "com.amazonaws.us-east-1.not-a-service";
    assert!(
        found.contains(&finding(
            "portal_endpoint_service_not_found",
            "warning",
            service
        )),
        "{found:?}"
    );
    assert!(
        !codes(&found).contains(&"availability_zone_unsupported"),
        "zones are not checked: {found:?}"
    );
}

#[tokio::test]
async fn missing_s3_endpoint_is_a_warning() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    set_topology(&app, |region| region.vpc_endpoints.clear());
    let (status, result) = check(&app, healthy_config()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result["passed"], true, "{result}");
    let found = findings(&app, healthy_config()).await;
    assert!(
        found.contains(&finding("s3_endpoint_missing", "warning", VPC)),
        "{found:?}"
    );
}

#[tokio::test]
async fn s3_gateway_must_route_each_subnet() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // SUBNET_B moves to a route table that the S3 gateway endpoint does not use.
    set_topology(&app, |region| {
        region.route_tables[0].subnet_ids.retain(|s| s != SUBNET_B);
        region.route_tables.push(RouteTable {
            route_table_id: "rtb-0a10000000000002a".to_owned(),
            vpc_id: VPC.to_owned(),
            main: false,
            subnet_ids: vec![SUBNET_B.to_owned()],
        });
    });
    let found = findings(&app, healthy_config()).await;
    let unrouted: Vec<&str> = found
        .iter()
        .filter(|(code, _, _)| code == "s3_endpoint_not_routed")
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(unrouted, [SUBNET_B], "{found:?}");

    // A subnet without an explicit association uses the main route table.
    set_topology(&app, |region| {
        region.route_tables[0].subnet_ids.retain(|s| s != SUBNET_B);
        region.route_tables[0].main = true;
    });
    let found = findings(&app, healthy_config()).await;
    assert!(
        !codes(&found).contains(&"s3_endpoint_not_routed"),
        "{found:?}"
    );
}

#[tokio::test]
async fn check_rejects_invalid_body() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, problem) = check(&app, config(VPC, &[SG_1], &[])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/validation-error");
    assert_eq!(problem["errors"][0]["field"], "subnets");
}

#[tokio::test]
async fn ec2_throttling_gives_502_on_checks() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    app.sandbox().set_faults(throttle_ec2());
    let (status, problem) = check(&app, healthy_config()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert_eq!(problem["type"], "/problems/aws-unavailable");
    assert!(problem["request_id"].is_string(), "{problem}");

    // A change is accepted all the same, with a warning; the worker runs the checks later.
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = healthy_config();
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let codes: Vec<&str> = operation["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["vpc_checks_deferred"]);
}

/// An EC2 that responds too slowly does not hold a change until the request timeout. After
/// 5 s the change is accepted with its checks deferred to the worker.
#[tokio::test]
async fn slow_ec2_defers_the_checks_of_a_change() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    app.sandbox().set_faults(Faults {
        latency_ms: 8_000,
        actions: Some(EC2_ACTIONS.iter().map(|a| a.to_string()).collect()),
        ..Default::default()
    });
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = healthy_config();
    let started = std::time::Instant::now();
    let (status, operation) = app.create_workforce(body).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    assert_eq!(
        operation["findings"][0]["code"], "vpc_checks_deferred",
        "{operation}"
    );
    assert!(
        operation["findings"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Timeout"),
        "{operation}"
    );
    // Well below the 8 s of latency, so the checks did not wait for EC2.
    assert!(took < std::time::Duration::from_secs(7), "took {took:?}");
}

/// A check of a VPC configuration while EC2 does not respond gets 502 after 10 s, not the
/// request timeout's 503 after 30 s.
#[tokio::test]
async fn slow_ec2_gives_502_on_checks() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    app.sandbox().set_faults(Faults {
        latency_ms: 20_000,
        actions: Some(EC2_ACTIONS.iter().map(|a| a.to_string()).collect()),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let (status, problem) = check(&app, healthy_config()).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert_eq!(problem["type"], "/problems/aws-unavailable");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test]
async fn create_with_failing_vpc_is_rejected() {
    let app = TestApp::spawn().await;
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = config(VPC, &[SG_1], &[SUBNET_A, SUBNET_UNSUPPORTED_AZ]);
    let (status, problem) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/vpc-prerequisites-failed");
    let findings = problem["findings"].as_array().expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "availability_zone_unsupported"
                && f["resource_id"] == SUBNET_UNSUPPORTED_AZ),
        "{problem}"
    );
    app.assert_nothing_written().await;
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 0);
}

#[tokio::test]
async fn replace_with_failing_vpc_is_rejected() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", Some(config(VPC, &[SG_1], &[SUBNET_A])))
        .await;
    let operations = app.count_rows("operations").await;
    let events = app.count_rows("audit_events").await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers");

    let (status, _, problem) = app
        .request(
            Method::PUT,
            &format!("{path}/vpc-config"),
            Some(config(VPC, &[OTHER_SG], &[SUBNET_B])),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/vpc-prerequisites-failed");
    assert_eq!(
        problem["findings"][0]["code"], "security_group_in_other_vpc",
        "{problem}"
    );
    assert_eq!(app.count_rows("operations").await, operations);
    assert_eq!(app.count_rows("audit_events").await, events);
    let (_, workforce) = app.get(&path).await;
    assert_eq!(workforce["vpc_config"]["subnets"], json!([SUBNET_A]));
    assert_eq!(app.sandbox().call_count("UpdateWorkforce"), 0);
}

#[tokio::test]
async fn warnings_are_stored_with_the_operation() {
    let app = TestApp::spawn().await;
    set_topology(&app, |region| region.vpc_endpoints.clear());
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = config(VPC, &[SG_1], &[SUBNET_A]);
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let stored: Vec<&str> = operation["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["s3_endpoint_missing", "vpc_task_types_limited"]);

    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["findings"], operation["findings"]);
    let detail: Value = sqlx::query_scalar(
        "select detail from audit_events where action = 'workforce.create.requested'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(detail["findings"], operation["findings"]);
}

#[tokio::test]
async fn worker_recheck_fails_changed_vpc() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = config(VPC, &[SG_1], &[SUBNET_A, SUBNET_B]);
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let id = operation["id"].as_str().unwrap().to_owned();

    // SUBNET_B is deleted after the change was accepted.
    set_topology(&app, |region| {
        region.subnets.retain(|s| s.subnet_id != SUBNET_B);
        region.route_tables[0].subnet_ids.retain(|s| s != SUBNET_B);
    });
    let worker = app.manual_worker("worker-a", Duration::from_secs(30));
    assert!(worker.run_once().await.unwrap());

    let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
    assert_eq!(current["status"], "failed", "{current}");
    assert_eq!(current["failure"]["code"], "VpcPrerequisitesFailed");
    assert!(
        current["failure"]["message"]
            .as_str()
            .unwrap()
            .contains(SUBNET_B),
        "{current}"
    );
    assert!(
        current["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "subnet_not_found" && f["resource_id"] == SUBNET_B),
        "{current}"
    );
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 0);
    let detail: Value =
        sqlx::query_scalar("select detail from audit_events where action = 'operation.failed'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(detail["findings"], current["findings"]);
}

#[tokio::test]
async fn worker_retries_while_ec2_is_down() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    app.create_active_workforce_manually("labelers").await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers/vpc-config");
    let (status, _, operation) = app
        .request(Method::PUT, &path, Some(config(VPC, &[SG_1], &[SUBNET_A])))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let id = operation["id"].as_str().unwrap().to_owned();

    app.sandbox().set_faults(throttle_ec2());
    let worker = app.manual_worker("worker-a", Duration::from_secs(30));
    assert!(worker.run_once().await.unwrap());
    let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
    assert_eq!(
        current["status"], "running",
        "an EC2 outage is retried: {current}"
    );
    assert_eq!(app.sandbox().call_count("UpdateWorkforce"), 0);

    app.sandbox().set_faults(Faults::default());
    let finished = drive_to_end(&app, &worker, &id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(app.sandbox().call_count("UpdateWorkforce"), 1);
}

/// Runs a manual worker until the operation has finished, and returns it.
async fn drive_to_end(
    app: &TestApp,
    worker: &workforce_service::worker::Worker,
    id: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        worker.run_once().await.unwrap();
        let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
        if matches!(current["status"].as_str(), Some("succeeded" | "failed")) {
            return current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "operation did not finish: {current}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

impl TestApp {
    /// Creates a Cognito workforce without a VPC configuration through a manual worker.
    async fn create_active_workforce_manually(&self, name: &str) {
        let (status, operation) = self.create_workforce(cognito_workforce(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
        let worker = self.manual_worker("setup", Duration::from_secs(30));
        let finished = drive_to_end(self, &worker, operation["id"].as_str().unwrap()).await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
    }
}

#[tokio::test]
async fn vpc_config_view_follows_an_update() {
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 1_500,
        ..Default::default()
    })
    .await;
    app.create_active_workforce("plain", None).await;
    let (status, problem) = app
        .get(&format!("/v1/regions/{REGION}/workforces/plain/vpc-config"))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a workforce without a VPC configuration: {problem}"
    );
    let (status, _, _) = app
        .request(
            Method::DELETE,
            &format!("/v1/regions/{REGION}/workforces/plain"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deleted = app.wait_for_operation_of("plain").await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");

    app.create_active_workforce("labelers", Some(config(VPC, &[SG_1], &[SUBNET_A])))
        .await;
    let view_path = format!("/v1/regions/{REGION}/workforces/labelers/vpc-config");

    // Before: one available endpoint in SUBNET_A.
    let (status, before) = app.get(&view_path).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let endpoints = before["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{before}");
    let first = &endpoints[0];
    assert_eq!(
        first["vpc_endpoint_id"],
        before["vpc_config"]["vpc_endpoint_id"]
    );
    assert_eq!(first["state"], "available");
    assert_eq!(first["subnet_ids"], json!([SUBNET_A]));
    assert_eq!(first["security_group_ids"], json!([SG_1]));
    assert!(
        !first["dns_names"].as_array().unwrap().is_empty(),
        "{before}"
    );
    assert!(first["created_at"].is_string(), "{before}");
    let first_id = first["vpc_endpoint_id"].as_str().unwrap().to_owned();

    // During: the old endpoint is deleted while the new one is created.
    let (status, _, operation) = app
        .request(
            Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/labelers/vpc-config"),
            Some(config(VPC, &[SG_1], &[SUBNET_A, SUBNET_B])),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let during = loop {
        let (status, view) = app.get(&view_path).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        if view["workforce_status"] == "Updating"
            && view["endpoints"].as_array().unwrap().len() == 2
        {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Updating view with two endpoints: {view}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let state_of = |view: &Value, id: &str| -> String {
        let endpoint = view["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["vpc_endpoint_id"] == id)
            .expect("endpoint listed");
        endpoint["state"].as_str().unwrap().to_owned()
    };
    assert_eq!(state_of(&during, &first_id), "deleting", "{during}");
    let new_endpoint = during["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["vpc_endpoint_id"] != first_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(new_endpoint["state"], "pending", "{during}");
    assert_eq!(new_endpoint["subnet_ids"], json!([SUBNET_A, SUBNET_B]));

    // After: only the new endpoint, available.
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (status, after) = app.get(&view_path).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["workforce_status"], "Active");
    assert_eq!(after["vpc_config"]["subnets"], json!([SUBNET_A, SUBNET_B]));
    let endpoints = after["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{after}");
    assert_eq!(
        endpoints[0]["vpc_endpoint_id"],
        new_endpoint["vpc_endpoint_id"]
    );
    assert_eq!(endpoints[0]["state"], "available");
    assert_eq!(
        after["vpc_config"]["vpc_endpoint_id"],
        new_endpoint["vpc_endpoint_id"]
    );
}

#[tokio::test]
async fn vpc_config_view_ec2_down_502() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", Some(config(VPC, &[SG_1], &[SUBNET_A])))
        .await;
    app.sandbox().set_faults(throttle_ec2());
    let (status, problem) = app
        .get(&format!(
            "/v1/regions/{REGION}/workforces/labelers/vpc-config"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert_eq!(problem["type"], "/problems/aws-unavailable");
}

impl TestApp {
    /// Waits for the newest operation of a workforce to finish, and returns it.
    async fn wait_for_operation_of(&self, name: &str) -> Value {
        let id: uuid::Uuid = sqlx::query_scalar(
            "select id from operations where workforce_name = $1 order by created_at desc limit 1",
        )
        .bind(name)
        .fetch_one(&self.db)
        .await
        .unwrap();
        self.wait_for_operation(&id.to_string()).await
    }
}

mod moto {
    //! The same checks against moto's EC2 emulator, a second implementation of the EC2 wire
    //! protocol that this project did not write.

    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, VpcEndpointType};

    use super::{finding, findings};
    use crate::support::*;

    /// A `moto_server` child process, stopped by its pid when dropped.
    struct MotoServer {
        child: Child,
        url: String,
    }

    impl Drop for MotoServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `moto_server` on a free loopback port. Returns None when the binary is missing
    /// and `REQUIRE_MOTO` is unset.
    async fn start_moto() -> Option<MotoServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    && std::env::var_os("REQUIRE_MOTO").is_none() =>
            {
                eprintln!(
                    "skipping the moto test: moto_server is not on PATH; install it with `pip install -r requirements-test.txt`, or set REQUIRE_MOTO=1 to fail instead"
                );
                return None;
            }
            Err(error) => panic!(
                "failed to start moto_server: {error}; install it with `pip install -r requirements-test.txt`"
            ),
        };
        let server = MotoServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(server)
    }

    fn ec2_client(url: &str) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(REGION))
            .endpoint_url(url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    fn enabled() -> AttributeBooleanValue {
        AttributeBooleanValue::builder().value(true).build()
    }

    /// Ids of the resources the test creates in moto.
    struct MotoVpc {
        vpc_id: String,
        group_id: String,
        subnet_ids: Vec<String>,
        zone_ids: Vec<String>,
    }

    /// Creates a VPC with `zones.len()` subnets and a security group, with DNS support and
    /// hostnames on when `dns` is true, and an S3 gateway endpoint on its main route table
    /// when `s3` is true.
    async fn create_vpc(
        ec2: &aws_sdk_ec2::Client,
        cidr: &str,
        zones: &[&str],
        dns: bool,
        s3: bool,
    ) -> MotoVpc {
        let vpc = ec2
            .create_vpc()
            .cidr_block(format!("{cidr}.0.0/16"))
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
        if dns {
            ec2.modify_vpc_attribute()
                .vpc_id(&vpc_id)
                .enable_dns_support(enabled())
                .send()
                .await
                .expect("ModifyVpcAttribute");
            ec2.modify_vpc_attribute()
                .vpc_id(&vpc_id)
                .enable_dns_hostnames(enabled())
                .send()
                .await
                .expect("ModifyVpcAttribute");
        }
        let mut subnet_ids = Vec::new();
        let mut zone_ids = Vec::new();
        for (index, zone) in zones.iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("{cidr}.{}.0/24", index + 1))
                .availability_zone(*zone)
                .send()
                .await
                .expect("CreateSubnet");
            let subnet = subnet.subnet().unwrap();
            subnet_ids.push(subnet.subnet_id().unwrap().to_owned());
            zone_ids.push(subnet.availability_zone_id().unwrap_or_default().to_owned());
        }
        let group = ec2
            .create_security_group()
            .group_name(format!("portal-{cidr}"))
            .description("Workforce portal access")
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("CreateSecurityGroup");
        let group_id = group.group_id().unwrap().to_owned();
        if s3 {
            let tables = ec2
                .describe_route_tables()
                .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
                .filters(
                    Filter::builder()
                        .name("association.main")
                        .values("true")
                        .build(),
                )
                .send()
                .await
                .expect("DescribeRouteTables");
            let main_table = tables
                .route_tables()
                .first()
                .and_then(|t| t.route_table_id())
                .expect("a main route table")
                .to_owned();
            ec2.create_vpc_endpoint()
                .vpc_id(&vpc_id)
                .vpc_endpoint_type(VpcEndpointType::Gateway)
                .service_name(format!("com.amazonaws.{REGION}.s3"))
                .route_table_ids(main_table)
                .send()
                .await
                .expect("CreateVpcEndpoint");
        }
        MotoVpc {
            vpc_id,
            group_id,
            subnet_ids,
            zone_ids,
        }
    }

    #[tokio::test]
    async fn checks_against_moto_ec2() {
        let Some(moto) = start_moto().await else {
            return;
        };
        let ec2 = ec2_client(&moto.url);
        let good = create_vpc(&ec2, "10.20", &["us-east-1a", "us-east-1b"], true, true).await;
        let bare = create_vpc(&ec2, "10.30", &["us-east-1a"], false, false).await;
        assert_ne!(
            good.zone_ids[0], good.zone_ids[1],
            "moto put both subnets in one zone: {:?}",
            good.zone_ids
        );

        // EC2 goes to moto; only the first subnet's zone is supported.
        let extra_args = vec![
            format!("--ec2-endpoint-url={}", moto.url),
            format!("--supported-az-ids={REGION}={}", good.zone_ids[0]),
        ];
        let app = TestApp::spawn_with(TestOptions {
            workers: 0,
            extra_args,
            ..Default::default()
        })
        .await;

        let healthy = serde_json::json!({"vpc_id": good.vpc_id, "security_group_ids": [good.group_id], "subnets": [good.subnet_ids[0]]});
        let found = findings(&app, healthy).await;
        assert_eq!(
            found,
            [finding("vpc_task_types_limited", "info", &good.vpc_id)]
        );

        let missing_subnet = "subnet-0123456789abcdef0";
        let missing_group = "sg-0123456789abcdef0";
        let mixed = serde_json::json!({
            "vpc_id": good.vpc_id,
            "security_group_ids": [good.group_id, bare.group_id, missing_group],
            "subnets": [good.subnet_ids[0], good.subnet_ids[1], bare.subnet_ids[0], missing_subnet],
        });
        let found = findings(&app, mixed).await;
        for expected in [
            finding(
                "availability_zone_unsupported",
                "error",
                &good.subnet_ids[1],
            ),
            finding("subnet_in_other_vpc", "error", &bare.subnet_ids[0]),
            finding("subnet_not_found", "error", missing_subnet),
            finding("security_group_in_other_vpc", "error", &bare.group_id),
            finding("security_group_not_found", "error", missing_group),
        ] {
            assert!(
                found.contains(&expected),
                "{expected:?} missing from {found:?}"
            );
        }

        let plain = serde_json::json!({"vpc_id": bare.vpc_id, "security_group_ids": [bare.group_id], "subnets": [bare.subnet_ids[0]]});
        let found = findings(&app, plain).await;
        assert!(
            found.contains(&finding(
                "vpc_dns_hostnames_disabled",
                "error",
                &bare.vpc_id
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&finding("s3_endpoint_missing", "warning", &bare.vpc_id)),
            "{found:?}"
        );
        assert!(
            !super::codes(&found).contains(&"vpc_dns_support_disabled"),
            "moto turns DNS support on by default: {found:?}"
        );

        let missing_vpc = serde_json::json!({"vpc_id": "vpc-0123456789abcdef0", "security_group_ids": [good.group_id], "subnets": [good.subnet_ids[0]]});
        let found = findings(&app, missing_vpc).await;
        assert!(
            found.contains(&finding("vpc_not_found", "error", "vpc-0123456789abcdef0")),
            "{found:?}"
        );
    }
}

/// When the checks deferred at acceptance pass in the worker, the operation shows the findings
/// that the change was sent with, including the note that every VPC configuration gets.
#[tokio::test]
async fn deferred_checks_store_worker_findings() {
    let app = TestApp::spawn().await;
    app.sandbox().set_faults(throttle_ec2());
    let mut body = cognito_workforce("labelers");
    body["vpc_config"] = healthy_config();
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    app.sandbox().set_faults(Default::default());

    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;

    assert_eq!(finished["status"], "succeeded", "{finished}");
    let codes: Vec<&str> = finished["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["vpc_task_types_limited"], "{finished}");
    let submitted: serde_json::Value = sqlx::query_scalar(
        "select detail from audit_events where action = 'operation.submitted' and operation_id = $1",
    )
    .bind(uuid::Uuid::parse_str(operation["id"].as_str().unwrap()).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        submitted["findings"][0]["code"], "vpc_task_types_limited",
        "{submitted}"
    );
}
