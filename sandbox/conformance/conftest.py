"""Fixtures of the boto3 conformance suite: clients pointed at the sandbox, its control API, and
per-test cleanup of faults, delays, topology, workforces and work teams.

Run it through run.sh, which starts a sandbox and sets SANDBOX_URL.
"""

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

# Set again here so that a bare `pytest` run can never reach real credentials or the instance
# metadata service either.
for _variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_variable, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "conformance",
        "AWS_SECRET_ACCESS_KEY": "conformance",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_ACCESS_KEY = "conformance"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

# Ids of the built-in topology, as listed in sandbox/README.md.
VPC_A = "vpc-0a10000000000000a"
VPC_B = "vpc-0b10000000000000b"
SUBNET_A1 = "subnet-0a10000000000001a"
SUBNET_A2 = "subnet-0a10000000000002a"
SUBNET_A3 = "subnet-0a10000000000003a"
SUBNET_A4_UNSUPPORTED = "subnet-0a10000000000004a"
SUBNET_B1 = "subnet-0b10000000000001b"
SG_A1 = "sg-0a10000000000001a"
SG_A2 = "sg-0a10000000000002a"
SG_B1 = "sg-0b10000000000001b"
ROUTE_TABLE_A = "rtb-0a10000000000001a"
S3_ENDPOINT_A = "vpce-0a1000000000000s3"
VPC_C = "vpc-0c10000000000000c"
SUBNET_C1 = "subnet-0c10000000000001c"
SG_C1 = "sg-0c10000000000001c"

COGNITO = {"UserPool": "us-east-1_abc123", "ClientId": "conformance-client"}


def oidc_config(host="idp.example.com"):
    """Return a complete OidcConfig whose endpoints all live on `host`."""
    return {
        "ClientId": "oidc-client",
        "ClientSecret": "oidc-secret",
        "Issuer": f"https://{host}",
        "AuthorizationEndpoint": f"https://{host}/authorize",
        "TokenEndpoint": f"https://{host}/token",
        "UserInfoEndpoint": f"https://{host}/userinfo",
        "LogoutEndpoint": f"https://{host}/logout",
        "JwksUri": f"https://{host}/jwks",
    }


def unique_name(prefix="wf"):
    """Return a workforce or work team name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_client_error(error, code, message=None):
    """Check a botocore ClientError's code, HTTP 400 status, request id and message part."""
    response = error.response
    assert response["Error"]["Code"] == code, response["Error"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RequestId"]
    if message is not None:
        assert message in response["Error"]["Message"], response["Error"]["Message"]


class Control:
    """Client of the sandbox control API under /_sandbox/."""

    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")

    def request(self, method, path, body=None):
        """Send one control request and return the decoded JSON body, or None when empty."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode()
            raise AssertionError(f"{method} /_sandbox{path} failed: {error.code} {detail}") from error
        return json.loads(text) if text else None

    def set_faults(self, **faults):
        return self.request("PUT", "/faults", faults)

    def set_delays(self, milliseconds):
        body = {name: milliseconds for name in ("initializing_ms", "updating_ms", "deleting_ms")}
        return self.request("PUT", "/delays", body)

    def stick(self, region, name, stuck=True, account=DEFAULT_ACCOUNT):
        body = {"account": account, "region": region, "name": name, "stuck": stuck}
        self.request("POST", "/workforces/stick", body)

    def fail_next_transition(self, region, name, reason, account=DEFAULT_ACCOUNT):
        body = {"account": account, "region": region, "name": name, "reason": reason}
        self.request("POST", "/workforces/fail", body)

    def call_count(self, action, region="us-east-1", account=DEFAULT_ACCOUNT):
        counts = self.request("GET", "/calls")
        return counts.get(account, {}).get(region, {}).get(action, 0)


@pytest.fixture(scope="session")
def sandbox_url():
    url = os.environ.get("SANDBOX_URL")
    if not url:
        pytest.exit("SANDBOX_URL is not set; run the suite with sandbox/conformance/run.sh", 2)
    host = urllib.parse.urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        pytest.exit(f"SANDBOX_URL must point at a loopback address, not {host}", 2)
    return url


@pytest.fixture(scope="session")
def control(sandbox_url):
    return Control(sandbox_url)


@pytest.fixture(scope="session")
def built_in_topology(control):
    return control.request("GET", "/topology")


@pytest.fixture
def used_scopes():
    """(region, access key id) pairs whose SageMaker state the test leaves to cleanup."""
    return set()


@pytest.fixture
def client_factory(sandbox_url, used_scopes):
    """Build boto3 clients for the sandbox. `max_attempts` counts every attempt, so the
    default of 1 turns retries off. It maps to botocore's `total_max_attempts`, because
    botocore's own `max_attempts` counts retries only and 1 would still retry once."""

    def make(
        service,
        region="us-east-1",
        access_key=DEFAULT_ACCESS_KEY,
        max_attempts=1,
        validate=True,
    ):
        if service == "sagemaker":
            used_scopes.add((region, access_key))
        config = Config(
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            parameter_validation=validate,
            connect_timeout=5,
            read_timeout=15,
        )
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=sandbox_url,
            aws_access_key_id=access_key,
            aws_secret_access_key="conformance",
            config=config,
        )

    return make


@pytest.fixture
def sagemaker(client_factory):
    return client_factory("sagemaker")


@pytest.fixture
def sagemaker_raw(client_factory):
    """SageMaker client without botocore's parameter validation, to reach server-side checks."""
    return client_factory("sagemaker", validate=False)


@pytest.fixture
def ec2(client_factory):
    return client_factory("ec2")


@pytest.fixture
def ec2_raw(client_factory):
    return client_factory("ec2", validate=False)


def account_for(topology, access_key):
    return topology.get("access_keys", {}).get(access_key, topology["default_account"])


def remove_all_sagemaker_state(client, control, region, account):
    """Delete every work team and the workforce of one account and region, waiting until gone."""
    for page in client.get_paginator("list_workteams").paginate():
        for team in page["Workteams"]:
            client.delete_workteam(WorkteamName=team["WorkteamName"])
    deadline = time.monotonic() + 10
    for workforce in client.list_workforces()["Workforces"]:
        name = workforce["WorkforceName"]
        control.stick(region, name, stuck=False, account=account)
        while True:
            assert time.monotonic() < deadline, f"workforce {name} in {region} was not deleted"
            try:
                status = client.describe_workforce(WorkforceName=name)["Workforce"]["Status"]
            except ClientError as error:
                if "No workforce" in error.response["Error"]["Message"]:
                    break
                raise
            if status in ("Active", "Failed"):
                client.delete_workforce(WorkforceName=name)
            time.sleep(0.02)


@pytest.fixture(autouse=True)
def reset_sandbox(control, built_in_topology, client_factory, used_scopes):
    """Restore faults, delays and topology, and delete what the test created."""
    control.set_faults()
    control.set_delays(0)
    yield
    control.set_faults()
    control.set_delays(0)
    topology = control.request("GET", "/topology")
    for region, access_key in sorted(used_scopes):
        client = client_factory("sagemaker", region=region, access_key=access_key)
        account = account_for(topology, access_key)
        remove_all_sagemaker_state(client, control, region, account)
    control.request("PUT", "/topology", built_in_topology)
