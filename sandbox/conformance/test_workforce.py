"""SageMaker workforce operations and lifecycle, as botocore sends and parses them."""

import datetime
import re
import time

import pytest
from botocore.exceptions import ClientError

from conftest import (
    COGNITO,
    DEFAULT_ACCOUNT,
    SG_A1,
    SG_A2,
    SG_C1,
    SUBNET_A1,
    SUBNET_A2,
    SUBNET_A3,
    SUBNET_A4_UNSUPPORTED,
    SUBNET_C1,
    VPC_A,
    VPC_C,
    assert_client_error,
    oidc_config,
    unique_name,
)

SUB_DOMAIN = re.compile(r"^[a-z0-9]{10}\.labeling\.us-east-1\.sagemaker\.aws$")


def describe(client, name):
    return client.describe_workforce(WorkforceName=name)["Workforce"]


def wait_for_status(client, name, expected_status, timeout=5.0):
    """Poll DescribeWorkforce until the status is `expected_status` and return the workforce."""
    deadline = time.monotonic() + timeout
    while True:
        workforce = describe(client, name)
        if workforce["Status"] == expected_status:
            return workforce
        assert time.monotonic() < deadline, (
            f"status stayed {workforce['Status']}, expected {expected_status}"
        )
        time.sleep(0.05)


def assert_gone(client, name):
    with pytest.raises(ClientError) as raised:
        describe(client, name)
    assert_client_error(raised.value, "ValidationException", "No workforce")


def test_create_cognito_describe_defaults(sagemaker):
    name = unique_name()
    response = sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    arn = f"arn:aws:sagemaker:us-east-1:{DEFAULT_ACCOUNT}:workforce/{name}"
    assert response["WorkforceArn"] == arn
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]

    workforce = describe(sagemaker, name)
    assert workforce["WorkforceName"] == name
    assert workforce["WorkforceArn"] == arn
    assert workforce["Status"] == "Active"
    assert workforce["SourceIpConfig"] == {"Cidrs": []}
    assert SUB_DOMAIN.match(workforce["SubDomain"]), workforce["SubDomain"]
    assert workforce["CognitoConfig"] == COGNITO
    assert "OidcConfig" not in workforce
    assert "WorkforceVpcConfig" not in workforce
    assert "FailureReason" not in workforce
    assert workforce["IpAddressType"] == "ipv4"
    assert isinstance(workforce["CreateDate"], datetime.datetime)
    assert workforce["LastUpdatedDate"] >= workforce["CreateDate"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - workforce["CreateDate"]).total_seconds()) < 60


def test_create_oidc_hides_client_secret(sagemaker):
    name = unique_name()
    config = oidc_config()
    config["Scope"] = "openid email"
    config["AuthenticationRequestExtraParams"] = {"prompt": "login"}
    sagemaker.create_workforce(WorkforceName=name, OidcConfig=config)

    workforce = describe(sagemaker, name)
    expected = {key: value for key, value in config.items() if key != "ClientSecret"}
    assert workforce["OidcConfig"] == expected
    assert "CognitoConfig" not in workforce


def test_create_with_source_ip_and_dualstack(sagemaker):
    name = unique_name()
    cidrs = ["192.0.2.0/24", "2001:db8::/32"]
    sagemaker.create_workforce(
        WorkforceName=name,
        CognitoConfig=COGNITO,
        SourceIpConfig={"Cidrs": cidrs},
        IpAddressType="dualstack",
        Tags=[{"Key": "team", "Value": "labeling"}],
    )

    workforce = describe(sagemaker, name)
    assert workforce["SourceIpConfig"] == {"Cidrs": cidrs}
    assert workforce["IpAddressType"] == "dualstack"


def test_lifecycle_held_initializing(sagemaker, control):
    name = unique_name()
    control.stick("us-east-1", name)
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    assert describe(sagemaker, name)["Status"] == "Initializing"
    assert describe(sagemaker, name)["Status"] == "Initializing"
    listed = sagemaker.list_workforces()["Workforces"]
    assert [w["Status"] for w in listed] == ["Initializing"]

    control.stick("us-east-1", name, stuck=False)
    assert describe(sagemaker, name)["Status"] == "Active"


def test_lifecycle_timed_transitions(sagemaker, control):
    control.set_delays(300)
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    assert describe(sagemaker, name)["Status"] == "Initializing"
    wait_for_status(sagemaker, name, "Active")

    updated = sagemaker.update_workforce(
        WorkforceName=name, SourceIpConfig={"Cidrs": ["198.51.100.0/24"]}
    )["Workforce"]
    assert updated["Status"] == "Updating"
    assert describe(sagemaker, name)["Status"] == "Updating"
    wait_for_status(sagemaker, name, "Active")

    sagemaker.delete_workforce(WorkforceName=name)
    assert describe(sagemaker, name)["Status"] == "Deleting"
    deadline = time.monotonic() + 5
    while True:
        try:
            status = describe(sagemaker, name)["Status"]
        except ClientError as error:
            assert_client_error(error, "ValidationException", "No workforce")
            break
        assert status == "Deleting"
        assert time.monotonic() < deadline, "workforce was not deleted"
        time.sleep(0.05)


def test_update_source_ip_set_and_clear(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    describe(sagemaker, name)

    steps = [["1.1.1.1/32"], ["2.2.2.2/32", "3.3.3.3/32"], ["2.2.2.2/32"], []]
    for cidrs in steps:
        updated = sagemaker.update_workforce(
            WorkforceName=name, SourceIpConfig={"Cidrs": cidrs}
        )["Workforce"]
        assert updated["SourceIpConfig"] == {"Cidrs": cidrs}
        assert updated["Status"] == "Updating"
        workforce = describe(sagemaker, name)
        assert workforce["Status"] == "Active"
        assert workforce["SourceIpConfig"] == {"Cidrs": cidrs}


def test_update_without_source_ip_keeps_cidrs(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(
        WorkforceName=name, CognitoConfig=COGNITO, SourceIpConfig={"Cidrs": ["1.1.1.1/32"]}
    )
    describe(sagemaker, name)

    sagemaker.update_workforce(WorkforceName=name)
    assert describe(sagemaker, name)["SourceIpConfig"] == {"Cidrs": ["1.1.1.1/32"]}


def test_update_oidc_endpoints(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, OidcConfig=oidc_config())
    describe(sagemaker, name)

    new_config = oidc_config("login.example.org")
    updated = sagemaker.update_workforce(WorkforceName=name, OidcConfig=new_config)["Workforce"]
    expected = {key: value for key, value in new_config.items() if key != "ClientSecret"}
    assert updated["OidcConfig"] == expected
    assert describe(sagemaker, name)["OidcConfig"] == expected


def test_update_vpc_add_replace_remove(sagemaker, ec2, control):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    describe(sagemaker, name)

    # Add: the response already shows the config, but no endpoint id until Active.
    first = {"VpcId": VPC_A, "SecurityGroupIds": [SG_A1], "Subnets": [SUBNET_A1]}
    updated = sagemaker.update_workforce(WorkforceName=name, WorkforceVpcConfig=first)
    assert updated["Workforce"]["WorkforceVpcConfig"] == first
    workforce = describe(sagemaker, name)
    first_endpoint = workforce["WorkforceVpcConfig"]["VpcEndpointId"]
    assert re.fullmatch(r"vpce-[0-9a-f]{17}", first_endpoint)
    assert {k: v for k, v in workforce["WorkforceVpcConfig"].items() if k != "VpcEndpointId"} == first

    # Replace: a new endpoint; the old one is deleting while the update runs, then gone.
    control.stick("us-east-1", name)
    second = {"VpcId": VPC_A, "SecurityGroupIds": [SG_A2], "Subnets": [SUBNET_A2, SUBNET_A3]}
    sagemaker.update_workforce(WorkforceName=name, WorkforceVpcConfig=second)
    old = ec2.describe_vpc_endpoints(VpcEndpointIds=[first_endpoint])["VpcEndpoints"]
    assert [e["State"] for e in old] == ["deleting"]
    control.stick("us-east-1", name, stuck=False)
    workforce = describe(sagemaker, name)
    second_endpoint = workforce["WorkforceVpcConfig"]["VpcEndpointId"]
    assert second_endpoint != first_endpoint
    assert workforce["WorkforceVpcConfig"]["Subnets"] == [SUBNET_A2, SUBNET_A3]
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpc_endpoints(VpcEndpointIds=[first_endpoint])
    assert_client_error(raised.value, "InvalidVpcEndpointId.NotFound", first_endpoint)

    # Remove with an empty config.
    updated = sagemaker.update_workforce(WorkforceName=name, WorkforceVpcConfig={})
    assert "WorkforceVpcConfig" not in updated["Workforce"]
    assert updated["Workforce"]["Status"] == "Updating"
    workforce = describe(sagemaker, name)
    assert workforce["Status"] == "Active"
    assert "WorkforceVpcConfig" not in workforce
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpc_endpoints(VpcEndpointIds=[second_endpoint])
    assert_client_error(raised.value, "InvalidVpcEndpointId.NotFound", second_endpoint)


def test_delete_goes_through_deleting(sagemaker, control):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    describe(sagemaker, name)

    control.stick("us-east-1", name)
    response = sagemaker.delete_workforce(WorkforceName=name)
    assert set(response) == {"ResponseMetadata"}
    assert describe(sagemaker, name)["Status"] == "Deleting"
    assert [w["Status"] for w in sagemaker.list_workforces()["Workforces"]] == ["Deleting"]

    control.stick("us-east-1", name, stuck=False)
    assert_gone(sagemaker, name)
    assert sagemaker.list_workforces()["Workforces"] == []


def test_create_after_delete_succeeds(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    describe(sagemaker, name)
    sagemaker.delete_workforce(WorkforceName=name)
    assert_gone(sagemaker, name)

    second = unique_name()
    sagemaker.create_workforce(WorkforceName=second, CognitoConfig=COGNITO)
    assert describe(sagemaker, second)["Status"] == "Active"


def test_unsupported_zone_ends_failed(sagemaker, ec2):
    name = unique_name()
    config = {"VpcId": VPC_A, "SecurityGroupIds": [SG_A1], "Subnets": [SUBNET_A4_UNSUPPORTED]}
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO, WorkforceVpcConfig=config)

    workforce = describe(sagemaker, name)
    assert workforce["Status"] == "Failed"
    reason = workforce["FailureReason"]
    assert SUBNET_A4_UNSUPPORTED in reason
    assert "us-east-1e" in reason
    assert "use1-az3" in reason
    assert "VpcEndpointId" not in workforce["WorkforceVpcConfig"]
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-type", "Values": ["Interface"]}]
    )["VpcEndpoints"]
    assert [e["State"] for e in endpoints] == ["failed"]

    sagemaker.delete_workforce(WorkforceName=name)
    assert_gone(sagemaker, name)


def test_forced_failure_on_create(sagemaker, control):
    name = unique_name()
    control.fail_next_transition("us-east-1", name, "Injected failure for the conformance suite")
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    workforce = describe(sagemaker, name)
    assert workforce["Status"] == "Failed"
    assert workforce["FailureReason"] == "Injected failure for the conformance suite"


def test_forced_failure_during_update(sagemaker, control):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    describe(sagemaker, name)

    control.stick("us-east-1", name)
    sagemaker.update_workforce(WorkforceName=name, SourceIpConfig={"Cidrs": ["1.1.1.1/32"]})
    control.fail_next_transition("us-east-1", name, "update failed")
    assert describe(sagemaker, name)["Status"] == "Updating"
    control.stick("us-east-1", name, stuck=False)

    workforce = describe(sagemaker, name)
    assert workforce["Status"] == "Failed"
    assert workforce["FailureReason"] == "update failed"


@pytest.mark.parametrize("sort_by", ["Name", "CreateDate"])
@pytest.mark.parametrize("sort_order", ["Ascending", "Descending"])
def test_list_workforces_sorting(sagemaker, sort_by, sort_order):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    listed = sagemaker.list_workforces(SortBy=sort_by, SortOrder=sort_order)["Workforces"]
    assert [w["WorkforceName"] for w in listed] == [name]
    assert listed[0]["SourceIpConfig"] == {"Cidrs": []}


def test_list_workforces_name_contains(sagemaker):
    name = unique_name("listed")
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    hits = sagemaker.list_workforces(NameContains=name[7:15])["Workforces"]
    assert [w["WorkforceName"] for w in hits] == [name]
    misses = sagemaker.list_workforces(NameContains="nothing")["Workforces"]
    assert misses == []


def test_list_workforces_pagination(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)

    page = sagemaker.list_workforces(MaxResults=1)
    assert [w["WorkforceName"] for w in page["Workforces"]] == [name]
    assert "NextToken" not in page

    pages = list(sagemaker.get_paginator("list_workforces").paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) == 1
    assert [w["WorkforceName"] for w in pages[0]["Workforces"]] == [name]


def test_list_workforces_empty(sagemaker):
    response = sagemaker.list_workforces()
    assert response["Workforces"] == []
    assert "NextToken" not in response


def test_region_comes_from_credential_scope(client_factory):
    client = client_factory("sagemaker", region="us-west-2")
    name = unique_name()
    arn = client.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)["WorkforceArn"]

    assert arn == f"arn:aws:sagemaker:us-west-2:{DEFAULT_ACCOUNT}:workforce/{name}"
    sub_domain = describe(client, name)["SubDomain"]
    assert sub_domain.endswith(".labeling.us-west-2.sagemaker.aws")


def test_vpc_workforce_in_second_region(client_factory):
    sagemaker = client_factory("sagemaker", region="us-west-2")
    ec2 = client_factory("ec2", region="us-west-2")
    name = unique_name()
    config = {"VpcId": VPC_C, "SecurityGroupIds": [SG_C1], "Subnets": [SUBNET_C1]}
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO, WorkforceVpcConfig=config)

    workforce = describe(sagemaker, name)
    assert workforce["Status"] == "Active"
    endpoint_id = workforce["WorkforceVpcConfig"]["VpcEndpointId"]
    endpoint = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"][0]
    assert endpoint["ServiceName"] == "com.amazonaws.us-west-2.sagemaker.labeling"
    assert endpoint["VpcId"] == VPC_C
    assert endpoint["State"] == "available"


def test_access_key_maps_to_account(client_factory, control, built_in_topology):
    topology = dict(built_in_topology)
    topology["access_keys"] = {"AKIDSECONDACCOUNT": "210987654321"}
    control.request("PUT", "/topology", topology)
    client = client_factory("sagemaker", access_key="AKIDSECONDACCOUNT")
    before = control.call_count("CreateWorkforce", account="210987654321")

    name = unique_name()
    arn = client.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)["WorkforceArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:210987654321:workforce/{name}"
    assert control.call_count("CreateWorkforce", account="210987654321") == before + 1
