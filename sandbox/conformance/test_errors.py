"""SageMaker error codes, messages and wire form, as botocore parses them.

Constraint checks run on a client without botocore's parameter validation, because botocore
itself rejects missing members and too-short values before sending.
"""

import re

import pytest
from botocore.exceptions import ClientError

from conftest import (
    COGNITO,
    DEFAULT_ACCOUNT,
    SG_A1,
    SG_B1,
    SUBNET_A1,
    SUBNET_B1,
    VPC_A,
    assert_client_error,
    oidc_config,
    unique_name,
)

CONSTRAINT_MESSAGE = re.compile(
    r"^(1 validation error|[2-9]\d* validation errors) detected: "
    r"Value .+ at '[a-zA-Z.0-9]+' failed to satisfy constraint: Member must .+$"
)
WORKFORCE_NAME_PATTERN = r"[a-zA-Z0-9]([a-zA-Z0-9\-]){0,62}"


def validation_message(raised):
    """Check a constraint ValidationException and return its message."""
    assert_client_error(raised.value, "ValidationException")
    message = raised.value.response["Error"]["Message"]
    assert CONSTRAINT_MESSAGE.match(message), message
    return message


def create_active(client, name=None, **arguments):
    name = name or unique_name()
    client.create_workforce(WorkforceName=name, CognitoConfig=COGNITO, **arguments)
    assert client.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Active"
    return name


def test_constraint_pattern(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.create_workforce(WorkforceName="-bad", CognitoConfig=COGNITO)
    assert validation_message(raised) == (
        "1 validation error detected: Value '-bad' at 'workforceName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {WORKFORCE_NAME_PATTERN}"
    )


def test_constraint_max_length_and_pattern(sagemaker_raw):
    name = "a" * 64
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.describe_workforce(WorkforceName=name)
    assert validation_message(raised) == (
        f"2 validation errors detected: Value '{name}' at 'workforceName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63; "
        f"Value '{name}' at 'workforceName' failed to satisfy constraint: Member must satisfy "
        f"regular expression pattern: {WORKFORCE_NAME_PATTERN}"
    )


def test_constraint_min_length(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.delete_workforce(WorkforceName="")
    message = validation_message(raised)
    assert message.startswith("2 validation errors detected: ")
    assert (
        "Value '' at 'workforceName' failed to satisfy constraint: Member must have length "
        "greater than or equal to 1"
    ) in message


def test_constraint_required_member(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.describe_workforce()
    assert validation_message(raised) == (
        "1 validation error detected: Value null at 'workforceName' failed to satisfy "
        "constraint: Member must not be null"
    )


def test_constraint_nested_required_member(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.create_workforce(
            WorkforceName=unique_name(), CognitoConfig={"UserPool": COGNITO["UserPool"]}
        )
    assert validation_message(raised) == (
        "1 validation error detected: Value null at 'cognitoConfig.clientId' failed to "
        "satisfy constraint: Member must not be null"
    )


def test_constraint_list_size(sagemaker_raw):
    groups = [f"sg-{index:017x}" for index in range(6)]
    config = {"VpcId": VPC_A, "SecurityGroupIds": groups, "Subnets": [SUBNET_A1]}
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, WorkforceVpcConfig=config
        )
    assert validation_message(raised) == (
        f"1 validation error detected: Value '[{', '.join(groups)}]' at "
        "'workforceVpcConfig.securityGroupIds' failed to satisfy constraint: Member must have "
        "length less than or equal to 5"
    )


def test_constraint_empty_list(sagemaker_raw):
    config = {"VpcId": VPC_A, "SecurityGroupIds": [SG_A1], "Subnets": []}
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, WorkforceVpcConfig=config
        )
    assert validation_message(raised) == (
        "1 validation error detected: Value '[]' at 'workforceVpcConfig.subnets' failed to "
        "satisfy constraint: Member must have length greater than or equal to 1"
    )


def test_constraint_too_many_cidrs(sagemaker):
    cidrs = [f"10.0.{index}.0/24" for index in range(11)]
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, SourceIpConfig={"Cidrs": cidrs}
        )
    message = validation_message(raised)
    assert "at 'sourceIpConfig.cidrs' failed to satisfy constraint" in message
    assert "Member must have length less than or equal to 10" in message


def test_constraint_invalid_cidr(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(),
            CognitoConfig=COGNITO,
            SourceIpConfig={"Cidrs": ["10.0.0.0/33"]},
        )
    message = validation_message(raised)
    assert "Value '10.0.0.0/33' at 'sourceIpConfig.cidrs.1.member'" in message


def test_constraint_enum(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, IpAddressType="ipv5"
        )
    assert validation_message(raised) == (
        "1 validation error detected: Value 'ipv5' at 'ipAddressType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ipv4, dualstack]"
    )


def test_constraint_enum_on_list(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.list_workforces(SortBy="Size", SortOrder="Sideways")
    message = validation_message(raised)
    assert message.startswith("2 validation errors detected: ")
    assert "Value 'Size' at 'sortBy' failed to satisfy constraint" in message
    assert "Value 'Sideways' at 'sortOrder' failed to satisfy constraint" in message


def test_constraint_integer_range(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.list_workforces(MaxResults=0)
    assert validation_message(raised) == (
        "1 validation error detected: Value '0' at 'maxResults' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1"
    )


def test_constraint_oidc_secret_is_masked(sagemaker):
    config = oidc_config()
    config["ClientSecret"] = "secret\u00e9value"
    config["Issuer"] = "http://insecure.example.com"
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(WorkforceName=unique_name(), OidcConfig=config)
    message = validation_message(raised)
    assert message.startswith("2 validation errors detected: ")
    assert "secret" not in message.replace("clientSecret", "")
    assert "Value 'http://insecure.example.com' at 'oidcConfig.issuer'" in message


def test_second_workforce_rejected(sagemaker):
    create_active(sagemaker)
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(WorkforceName=unique_name(), CognitoConfig=COGNITO)
    assert_client_error(raised.value, "ValidationException")
    assert raised.value.response["Error"]["Message"] == (
        f"Cannot create more than one workforce for account {DEFAULT_ACCOUNT}. If you are "
        "trying to update existing workforce, please use UpdateWorkforce API"
    )


@pytest.mark.parametrize("operation", ["describe_workforce", "delete_workforce", "update_workforce"])
def test_missing_workforce(sagemaker, operation):
    with pytest.raises(ClientError) as raised:
        getattr(sagemaker, operation)(WorkforceName="missing-workforce")
    assert_client_error(raised.value, "ValidationException", "No workforce")
    assert "missing-workforce" in raised.value.response["Error"]["Message"]


def test_wrong_name_is_missing_workforce(sagemaker):
    create_active(sagemaker)
    with pytest.raises(ClientError) as raised:
        sagemaker.describe_workforce(WorkforceName="other-name")
    assert_client_error(raised.value, "ValidationException", "No workforce")


@pytest.mark.parametrize("held_status", ["Initializing", "Updating"])
def test_update_while_not_active_conflicts(sagemaker, control, held_status):
    name = unique_name()
    control.stick("us-east-1", name)
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    if held_status == "Updating":
        control.stick("us-east-1", name, stuck=False)
        assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Active"
        control.stick("us-east-1", name)
        sagemaker.update_workforce(WorkforceName=name, SourceIpConfig={"Cidrs": ["1.1.1.1/32"]})
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == held_status

    with pytest.raises(sagemaker.exceptions.ConflictException) as raised:
        sagemaker.update_workforce(WorkforceName=name, SourceIpConfig={"Cidrs": []})
    assert_client_error(raised.value, "ConflictException", held_status)


def test_update_failed_workforce_conflicts(sagemaker, control):
    name = unique_name()
    control.fail_next_transition("us-east-1", name, "broken")
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Failed"

    with pytest.raises(ClientError) as raised:
        sagemaker.update_workforce(WorkforceName=name, SourceIpConfig={"Cidrs": []})
    assert_client_error(raised.value, "ConflictException", "Failed")


@pytest.mark.parametrize("held_status", ["Initializing", "Updating", "Deleting"])
def test_delete_while_transitioning_conflicts(sagemaker, control, held_status):
    name = create_active(sagemaker)
    control.stick("us-east-1", name)
    if held_status == "Initializing":
        # Only a new workforce can be Initializing, so replace the Active one.
        sagemaker.delete_workforce(WorkforceName=name)
        control.stick("us-east-1", name, stuck=False)
        sagemaker.list_workforces()
        name = unique_name()
        control.stick("us-east-1", name)
        sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    elif held_status == "Updating":
        sagemaker.update_workforce(WorkforceName=name, SourceIpConfig={"Cidrs": ["1.1.1.1/32"]})
    else:
        sagemaker.delete_workforce(WorkforceName=name)
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == held_status

    with pytest.raises(ClientError) as raised:
        sagemaker.delete_workforce(WorkforceName=name)
    assert_client_error(raised.value, "ConflictException", held_status)


def test_delete_with_workteams_is_resource_in_use(sagemaker):
    name = create_active(sagemaker)
    sagemaker.create_workteam(
        WorkteamName=unique_name("team"),
        WorkforceName=name,
        MemberDefinitions=[
            {
                "CognitoMemberDefinition": {
                    "UserPool": COGNITO["UserPool"],
                    "UserGroup": "labelers",
                    "ClientId": COGNITO["ClientId"],
                }
            }
        ],
        Description="blocks deletion",
    )
    with pytest.raises(sagemaker.exceptions.ResourceInUse) as raised:
        sagemaker.delete_workforce(WorkforceName=name)
    assert_client_error(raised.value, "ResourceInUse", name)
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Active"


def test_oidc_update_with_workteams_rejected(sagemaker):
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, OidcConfig=oidc_config())
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Active"
    sagemaker.create_workteam(
        WorkteamName=unique_name("team"),
        MemberDefinitions=[{"OidcMemberDefinition": {"Groups": ["labelers"]}}],
        Description="OIDC team",
    )
    with pytest.raises(ClientError) as raised:
        sagemaker.update_workforce(WorkforceName=name, OidcConfig=oidc_config("other.example.com"))
    assert_client_error(raised.value, "ValidationException", "work teams")


def test_oidc_update_on_cognito_rejected(sagemaker):
    name = create_active(sagemaker)
    with pytest.raises(ClientError) as raised:
        sagemaker.update_workforce(WorkforceName=name, OidcConfig=oidc_config())
    assert_client_error(raised.value, "ValidationException", "Cognito")


def test_cognito_and_oidc_together_rejected(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, OidcConfig=oidc_config()
        )
    assert_client_error(raised.value, "ValidationException", "CognitoConfig or OidcConfig")


def test_neither_cognito_nor_oidc_rejected(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(WorkforceName=unique_name())
    assert_client_error(raised.value, "ValidationException", "CognitoConfig or OidcConfig")


def test_ipv6_cidr_needs_dualstack(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(),
            CognitoConfig=COGNITO,
            SourceIpConfig={"Cidrs": ["2001:db8::/32"]},
        )
    assert_client_error(raised.value, "ValidationException", "dualstack")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"VpcId": "vpc-0ffffffffffffffff", "SecurityGroupIds": [SG_A1], "Subnets": [SUBNET_A1]}, "vpc-0ffffffffffffffff"),
        ({"VpcId": VPC_A, "SecurityGroupIds": [SG_A1], "Subnets": [SUBNET_B1]}, SUBNET_B1),
        ({"VpcId": VPC_A, "SecurityGroupIds": [SG_B1], "Subnets": [SUBNET_A1]}, SG_B1),
        ({"VpcId": VPC_A, "SecurityGroupIds": ["sg-0fffffffffffffff0"], "Subnets": [SUBNET_A1]}, "sg-0fffffffffffffff0"),
        ({"VpcId": VPC_A, "Subnets": [SUBNET_A1]}, "SecurityGroupIds"),
    ],
    ids=["unknown-vpc", "subnet-other-vpc", "group-other-vpc", "unknown-group", "partial"],
)
def test_bad_vpc_config_rejected(sagemaker, config, message):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workforce(
            WorkforceName=unique_name(), CognitoConfig=COGNITO, WorkforceVpcConfig=config
        )
    assert_client_error(raised.value, "ValidationException", message)
    assert sagemaker.list_workforces()["Workforces"] == []


def test_invalid_next_token(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.list_workforces(NextToken="not-a-token")
    assert_client_error(raised.value, "ValidationException", "not-a-token")


def test_unknown_operation(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.list_domains()
    assert_client_error(raised.value, "UnknownOperationException", "ListDomains")


def test_error_body_and_headers(sagemaker_raw):
    with pytest.raises(ClientError) as raised:
        sagemaker_raw.describe_workforce(WorkforceName="missing-workforce")
    metadata = raised.value.response["ResponseMetadata"]
    headers = metadata["HTTPHeaders"]
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-requestid"] == metadata["RequestId"]
    assert re.fullmatch(r"[0-9a-f-]{36}", metadata["RequestId"])
