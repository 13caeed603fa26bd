//! The main job end to end: create with a VPC, change, restrict, delete, and the audit trail.

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// Builds an EC2 client pointed at the test's sandbox, to look at what Ground Truth created.
async fn ec2_client(app: &TestApp) -> aws_sdk_ec2::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(app.sandbox().endpoint_url())
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
}

async fn endpoint_exists(ec2: &aws_sdk_ec2::Client, endpoint_id: &str) -> bool {
    match ec2
        .describe_vpc_endpoints()
        .vpc_endpoint_ids(endpoint_id)
        .send()
        .await
    {
        Ok(output) => !output.vpc_endpoints().is_empty(),
        Err(error) => {
            let code = aws_sdk_ec2::error::ProvideErrorMetadata::code(&error)
                .unwrap_or_default()
                .to_owned();
            assert_eq!(code, "InvalidVpcEndpointId.NotFound", "{error:?}");
            false
        }
    }
}

#[tokio::test]
async fn full_workforce_lifecycle() {
    let app = TestApp::spawn().await;
    let ec2 = ec2_client(&app).await;
    let name = "labelers";
    let path = format!("/v1/regions/{REGION}/workforces/{name}");

    // Create with a VPC configuration: 202 with the operation and its URL.
    let mut body = cognito_workforce(name);
    body["vpc_config"] = vpc_config(&[SUBNET_A, SUBNET_B]);
    body["tags"] = json!([{"key": "team", "value": "vision"}]);
    let (status, headers, operation) = app
        .request(
            Method::POST,
            &format!("/v1/regions/{REGION}/workforces"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let operation_id = operation["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"],
        format!("/v1/operations/{operation_id}").as_str()
    );
    assert_eq!(operation["kind"], "create_workforce");
    assert_eq!(operation["status"], "pending");

    // While SageMaker works, the workforce shows Initializing and the operation in flight.
    let mut saw_initializing = false;
    for _ in 0..200 {
        let (_, workforce) = app.get(&path).await;
        if workforce["status"] == "Initializing" {
            saw_initializing = true;
            assert_eq!(
                workforce["operation_in_flight"]["id"],
                operation_id.as_str()
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(saw_initializing, "the workforce never showed Initializing");

    let finished = app.wait_for_operation(&operation_id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["aws_status"], "Active");
    let (status, workforce) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workforce["status"], "Active");
    assert!(workforce["operation_in_flight"].is_null());
    assert!(
        workforce["arn"]
            .as_str()
            .unwrap()
            .ends_with(":workforce/labelers")
    );
    assert!(
        workforce["subdomain"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let first_endpoint = workforce["vpc_config"]["vpc_endpoint_id"]
        .as_str()
        .expect("VPC endpoint id")
        .to_owned();
    assert!(first_endpoint.starts_with("vpce-"));
    assert!(endpoint_exists(&ec2, &first_endpoint).await);

    // Replace the subnets.
    let (status, _, operation) = app
        .request(
            Method::PUT,
            &format!("{path}/vpc-config"),
            Some(vpc_config(&[SUBNET_B, SUBNET_C])),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (_, workforce) = app.get(&path).await;
    let subnets: Vec<&str> = workforce["vpc_config"]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(subnets, [SUBNET_B, SUBNET_C]);
    let second_endpoint = workforce["vpc_config"]["vpc_endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Remove the VPC configuration: the endpoint disappears from EC2.
    let (status, _, operation) = app
        .request(Method::DELETE, &format!("{path}/vpc-config"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (_, workforce) = app.get(&path).await;
    assert!(workforce["vpc_config"].is_null(), "{workforce}");
    assert!(!endpoint_exists(&ec2, &second_endpoint).await);

    // Restrict the public portal, then lift the restriction.
    for cidrs in [json!(["10.0.0.0/16", "192.0.2.0/24"]), json!([])] {
        let (status, _, operation) = app
            .request(
                Method::PUT,
                &format!("{path}/source-ip-config"),
                Some(json!({"cidrs": cidrs})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
        let finished = app
            .wait_for_operation(operation["id"].as_str().unwrap())
            .await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
        let (_, workforce) = app.get(&path).await;
        assert_eq!(workforce["source_ip_config"]["cidrs"], cidrs);
    }

    // Delete the workforce.
    let (status, _, operation) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (status, _) = app.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The operation and its event report the same last AWS status, although no workforce is
    // left to report one.
    assert!(finished["aws_status"].is_string(), "{finished}");
    let event_status: Option<String> = sqlx::query_scalar(
        "select detail->>'aws_status' from audit_events
          where operation_id = $1 and action = 'operation.succeeded'",
    )
    .bind(uuid::Uuid::parse_str(finished["id"].as_str().unwrap()).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(event_status.as_deref(), finished["aws_status"].as_str());

    // The audit log has every request and transition, in order, with states.
    let actions = app.audit_actions(name).await;
    let mut expected = Vec::new();
    for requested in [
        "workforce.create.requested",
        "workforce.vpc_config.put.requested",
        "workforce.vpc_config.delete.requested",
        "workforce.source_ip_config.put.requested",
        "workforce.source_ip_config.put.requested",
        "workforce.delete.requested",
    ] {
        expected.push((requested.to_owned(), "accepted".to_owned()));
        expected.push(("operation.started".to_owned(), "started".to_owned()));
        expected.push(("operation.submitted".to_owned(), "submitted".to_owned()));
        expected.push(("operation.succeeded".to_owned(), "succeeded".to_owned()));
    }
    assert_eq!(actions, expected);

    let (status, page) = app
        .get(&format!(
            "/v1/audit-events?workforce_name={name}&action=operation.succeeded&limit=50"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = page["items"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    // Newest first: the delete removed the workforce, so it has a before state and no after state.
    assert_eq!(events[0]["before"]["name"], name);
    assert!(events[0]["after"].is_null());
    // The create's success shows the workforce Active with its endpoint.
    let created = events.last().unwrap();
    assert_eq!(created["after"]["status"], "Active");
    assert_eq!(
        created["after"]["vpc_config"]["vpc_endpoint_id"],
        first_endpoint.as_str()
    );
}

#[tokio::test]
async fn oidc_workforce_keeps_secret_out_of_storage() {
    let app = TestApp::spawn().await;
    let canary = "canary-client-secret-7f3a9";
    let body = json!({"name": "oidc-team", "oidc_config": oidc_config(canary)});
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    assert!(!operation.to_string().contains(canary));
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");

    let path = format!("/v1/regions/{REGION}/workforces/oidc-team");
    let mut changed = oidc_config("second-canary-secret");
    changed["scope"] = json!("openid email");
    let (status, _, operation) = app
        .request(Method::PUT, &format!("{path}/oidc-config"), Some(changed))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");

    let (_, workforce) = app.get(&path).await;
    assert_eq!(workforce["auth_type"], "oidc");
    assert_eq!(workforce["oidc_config"]["scope"], "openid email");
    assert!(!workforce.to_string().contains("secret\":"));

    // No table contains either secret in readable form.
    let dump: String = sqlx::query_scalar(
        "select concat_ws(' ', (select string_agg(t::text, ' ') from workforces t),
                               (select string_agg(t::text, ' ') from operations t),
                               (select string_agg(t::text, ' ') from audit_events t))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(!dump.contains(canary));
    assert!(!dump.contains("second-canary-secret"));
    assert!(dump.contains("client_secret_set"));
}

#[tokio::test]
async fn list_endpoints_filter_and_paginate() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("east-team", None).await;
    let (status, _, operation) = app
        .request(
            Method::POST,
            "/v1/regions/us-west-2/workforces",
            Some(cognito_workforce("west-team")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    app.wait_for_operation(operation["id"].as_str().unwrap())
        .await;

    let (status, page) = app.get("/v1/workforces?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "east-team");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, page) = app
        .get(&format!("/v1/workforces?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(page["items"][0]["name"], "west-team");
    assert!(page["next_cursor"].is_null());

    let (_, page) = app.get("/v1/workforces?region=us-west-2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = app.get("/v1/workforces?status=Updating").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    let (_, page) = app.get("/v1/operations?workforce_name=west-team").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = app.get("/v1/operations?status=succeeded&limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, second) = app
        .get(&format!(
            "/v1/operations?status=succeeded&limit=1&cursor={cursor}"
        ))
        .await;
    assert_ne!(second["items"][0]["id"], page["items"][0]["id"]);
}

/// A dual-stack workforce keeps IPv6 blocks in its source-IP configuration, also when the
/// list is replaced later. An IPv4 workforce rejects them.
#[tokio::test]
async fn dualstack_workforce_takes_ipv6_blocks() {
    let app = TestApp::spawn().await;
    let mut body = cognito_workforce("both");
    body["ip_address_type"] = json!("dualstack");
    body["source_ip_config"] = json!({"cidrs": ["2001:db8::/32", "10.0.0.0/8"]});
    let (status, created) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    app.wait_for_operation(created["id"].as_str().unwrap())
        .await;
    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/both"))
        .await;
    assert_eq!(workforce["ip_address_type"], "dualstack", "{workforce}");

    let (status, _, replaced) = app
        .request(
            Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/both/source-ip-config"),
            Some(json!({"cidrs": ["2001:db8:1::/48"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replaced}");
    let finished = app
        .wait_for_operation(replaced["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/both"))
        .await;
    assert_eq!(
        workforce["source_ip_config"]["cidrs"],
        json!(["2001:db8:1::/48"])
    );

    // SageMaker allows one workforce per region, so the IPv4 one is in another region.
    let (status, _, created) = app
        .request(
            Method::POST,
            "/v1/regions/us-west-2/workforces",
            Some(cognito_workforce("only-four")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    app.wait_for_operation(created["id"].as_str().unwrap())
        .await;
    let (status, _, problem) = app
        .request(
            Method::PUT,
            "/v1/regions/us-west-2/workforces/only-four/source-ip-config",
            Some(json!({"cidrs": ["2001:db8::/32"]})),
        )
        .await;
    // The request is valid in itself; the stored address type is what rules the block out.
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("2001:db8::/32"), "{problem}");
    assert!(detail.contains("dualstack"), "{problem}");
    let (_, workforce) = app.get("/v1/regions/us-west-2/workforces/only-four").await;
    assert!(workforce["operation_in_flight"].is_null(), "{workforce}");
}

/// A replacement of the allow-list can switch the address type in the same call, which is how
/// an IPv4 workforce comes to take IPv6 blocks, and back.
#[tokio::test]
async fn allow_list_switches_the_address_type() {
    let app = TestApp::spawn().await;
    let (status, created) = app.create_workforce(cognito_workforce("switch")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    app.wait_for_operation(created["id"].as_str().unwrap())
        .await;
    let path = format!("/v1/regions/{REGION}/workforces/switch/source-ip-config");

    let body = json!({"cidrs": ["2001:db8::/32", "10.0.0.0/8"], "ip_address_type": "dualstack"});
    let (accepted, workforce) = apply_allow_list(&app, &path, body).await;
    assert_eq!(
        accepted["change"]["ip_address_type"], "dualstack",
        "{accepted}"
    );
    assert_eq!(workforce["ip_address_type"], "dualstack", "{workforce}");
    assert_eq!(
        workforce["source_ip_config"]["cidrs"],
        json!(["2001:db8::/32", "10.0.0.0/8"])
    );

    // Asking for IPv4 while listing an IPv6 block contradicts itself: 422, nothing queued.
    let (status, _, problem) = app
        .request(
            Method::PUT,
            &path,
            Some(json!({"cidrs": ["2001:db8::/32"], "ip_address_type": "ipv4"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "cidrs[0]", "{problem}");
    let (_, operations) = app.get("/v1/operations?workforce_name=switch").await;
    assert_eq!(
        operations["items"].as_array().unwrap().len(),
        2,
        "{operations}"
    );

    let body = json!({"cidrs": ["10.0.0.0/8"], "ip_address_type": "ipv4"});
    let (_, workforce) = apply_allow_list(&app, &path, body).await;
    assert_eq!(workforce["ip_address_type"], "ipv4", "{workforce}");
}

/// Sends `body` to the allow-list route `path` of the workforce `switch`, waits until the
/// change succeeds, and returns the accepted operation and the workforce read afterwards. The
/// record is what SageMaker describes after the change, so the read reflects the sandbox.
async fn apply_allow_list(app: &TestApp, path: &str, body: Value) -> (Value, Value) {
    let (status, _, accepted) = app.request(Method::PUT, path, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let finished = app
        .wait_for_operation(accepted["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/switch"))
        .await;
    (accepted, workforce)
}
