"""Fault injection through the control API and the call counts, checked through botocore."""

import time

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from conftest import DEFAULT_ACCOUNT, VPC_A, unique_name


def test_success_counts_one_call(sagemaker, ec2, control):
    before_sagemaker = control.call_count("ListWorkforces")
    before_ec2 = control.call_count("DescribeVpcs")

    sagemaker.list_workforces()
    ec2.describe_vpcs(VpcIds=[VPC_A])

    assert control.call_count("ListWorkforces") == before_sagemaker + 1
    assert control.call_count("DescribeVpcs") == before_ec2 + 1


def test_control_requests_not_counted(control):
    control.request("DELETE", "/calls")
    control.request("GET", "/faults")
    control.request("GET", "/health")
    assert control.request("GET", "/calls") == {}


def test_sagemaker_throttling(sagemaker, control):
    control.set_faults(throttle_ratio=1.0)
    before = control.call_count("DescribeWorkforce")

    with pytest.raises(ClientError) as raised:
        sagemaker.describe_workforce(WorkforceName="throttled")
    response = raised.value.response
    assert response["Error"]["Code"] == "ThrottlingException"
    assert response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RequestId"]
    assert control.call_count("DescribeWorkforce") == before + 1


def test_ec2_throttling(ec2, control):
    control.set_faults(throttle_ratio=1.0)
    before = control.call_count("DescribeSubnets")

    with pytest.raises(ClientError) as raised:
        ec2.describe_subnets()
    response = raised.value.response
    assert response["Error"]["Code"] == "RequestLimitExceeded"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert response["ResponseMetadata"]["RequestId"]
    assert control.call_count("DescribeSubnets") == before + 1


def test_sagemaker_server_error(sagemaker, control):
    control.set_faults(server_error_ratio=1.0)
    before = control.call_count("ListWorkforces")

    with pytest.raises(ClientError) as raised:
        sagemaker.list_workforces()
    response = raised.value.response
    assert response["Error"]["Code"] == "InternalFailure"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert response["ResponseMetadata"]["RequestId"]
    assert control.call_count("ListWorkforces") == before + 1


def test_ec2_server_error(ec2, control):
    control.set_faults(server_error_ratio=1.0)
    before = control.call_count("DescribeVpcEndpoints")

    with pytest.raises(ClientError) as raised:
        ec2.describe_vpc_endpoints()
    response = raised.value.response
    assert response["Error"]["Code"] == "InternalError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert response["ResponseMetadata"]["RequestId"]
    assert control.call_count("DescribeVpcEndpoints") == before + 1


def test_faults_limited_to_actions(sagemaker, ec2, control):
    control.set_faults(throttle_ratio=1.0, actions=["DescribeVpcs"])

    with pytest.raises(ClientError) as raised:
        ec2.describe_vpcs()
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert ec2.describe_subnets()["Subnets"]
    assert sagemaker.list_workforces()["Workforces"] == []


def test_retries_show_in_counts(client_factory, control):
    control.set_faults(throttle_ratio=1.0)
    client = client_factory("ec2", max_attempts=3)
    before = control.call_count("DescribeSecurityGroups")

    with pytest.raises(ClientError) as raised:
        client.describe_security_groups()
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert control.call_count("DescribeSecurityGroups") == before + 3


def test_retry_recovers_after_fault_cleared(client_factory, control):
    control.set_faults(server_error_ratio=1.0, actions=["ListWorkteams"])
    client = client_factory("sagemaker", max_attempts=1)
    with pytest.raises(ClientError):
        client.list_workteams()

    control.set_faults()
    assert client.list_workteams()["Workteams"] == []


def test_dropped_connection(sagemaker, control):
    control.set_faults(drop_ratio=1.0, actions=["ListWorkforces"])
    before = control.call_count("ListWorkforces")

    with pytest.raises(ConnectionClosedError):
        sagemaker.list_workforces()
    assert control.call_count("ListWorkforces") == before + 1


def test_latency(ec2, control):
    control.set_faults(latency_ms=300, actions=["DescribeRouteTables"])

    started = time.monotonic()
    ec2.describe_route_tables()
    slow = time.monotonic() - started
    started = time.monotonic()
    ec2.describe_vpcs()
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3


def test_counts_are_per_region(client_factory, control):
    west = client_factory("sagemaker", region="us-west-2")
    before_west = control.call_count("ListWorkteams", region="us-west-2")
    before_east = control.call_count("ListWorkteams", region="us-east-1")

    west.list_workteams()

    assert control.call_count("ListWorkteams", region="us-west-2") == before_west + 1
    assert control.call_count("ListWorkteams", region="us-east-1") == before_east


def test_faulted_create_leaves_no_workforce(sagemaker, control):
    control.set_faults(server_error_ratio=1.0, actions=["CreateWorkforce"])
    with pytest.raises(ClientError):
        sagemaker.create_workforce(
            WorkforceName=unique_name(),
            CognitoConfig={"UserPool": "us-east-1_abc123", "ClientId": "client"},
        )
    assert sagemaker.list_workforces()["Workforces"] == []
    counts = control.request("GET", "/calls")
    assert counts[DEFAULT_ACCOUNT]["us-east-1"]["CreateWorkforce"] >= 1
