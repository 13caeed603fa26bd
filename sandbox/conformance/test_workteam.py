"""SageMaker work team operations, as botocore sends and parses them."""

import datetime

import pytest
from botocore.exceptions import ClientError

from conftest import COGNITO, DEFAULT_ACCOUNT, assert_client_error, unique_name


def cognito_members(group="labelers"):
    return [
        {
            "CognitoMemberDefinition": {
                "UserPool": COGNITO["UserPool"],
                "UserGroup": group,
                "ClientId": COGNITO["ClientId"],
            }
        }
    ]


@pytest.fixture
def workforce(sagemaker):
    """Create an Active Cognito workforce in us-east-1 and return its name."""
    name = unique_name()
    sagemaker.create_workforce(WorkforceName=name, CognitoConfig=COGNITO)
    assert sagemaker.describe_workforce(WorkforceName=name)["Workforce"]["Status"] == "Active"
    return name


def test_create_describe_delete_workteam(sagemaker, workforce):
    team = unique_name("team")
    arn = sagemaker.create_workteam(
        WorkteamName=team,
        WorkforceName=workforce,
        MemberDefinitions=cognito_members(),
        Description="Labelers for the conformance suite",
        NotificationConfiguration={
            "NotificationTopicArn": "arn:aws:sns:us-east-1:123456789012:labeling"
        },
    )["WorkteamArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{DEFAULT_ACCOUNT}:workteam/private-crowd/{team}"

    described = sagemaker.describe_workteam(WorkteamName=team)["Workteam"]
    workforce_arn = f"arn:aws:sagemaker:us-east-1:{DEFAULT_ACCOUNT}:workforce/{workforce}"
    assert described["WorkteamName"] == team
    assert described["WorkteamArn"] == arn
    assert described["WorkforceArn"] == workforce_arn
    assert described["MemberDefinitions"] == cognito_members()
    assert described["Description"] == "Labelers for the conformance suite"
    assert described["NotificationConfiguration"]["NotificationTopicArn"].endswith(":labeling")
    assert isinstance(described["CreateDate"], datetime.datetime)
    assert described["SubDomain"].endswith(".labeling.us-east-1.sagemaker.aws")

    deleted = sagemaker.delete_workteam(WorkteamName=team)
    assert deleted["Success"] is True
    with pytest.raises(ClientError) as raised:
        sagemaker.describe_workteam(WorkteamName=team)
    assert_client_error(raised.value, "ValidationException", "The work team")


def test_create_workteam_without_workforce_name(sagemaker, workforce):
    team = unique_name("team")
    sagemaker.create_workteam(
        WorkteamName=team, MemberDefinitions=cognito_members(), Description="default workforce"
    )
    described = sagemaker.describe_workteam(WorkteamName=team)["Workteam"]
    assert described["WorkforceArn"].endswith(f":workforce/{workforce}")


def test_list_workteams_sort_filter_paginate(sagemaker, workforce):
    names = [f"team-{letter}-{unique_name('x')}" for letter in "cab"]
    for name in names:
        sagemaker.create_workteam(
            WorkteamName=name,
            WorkforceName=workforce,
            MemberDefinitions=cognito_members(),
            Description="listed",
        )

    by_name = sagemaker.list_workteams(SortBy="Name", SortOrder="Ascending")["Workteams"]
    assert [t["WorkteamName"] for t in by_name] == sorted(names)
    descending = sagemaker.list_workteams(SortBy="Name", SortOrder="Descending")["Workteams"]
    assert [t["WorkteamName"] for t in descending] == sorted(names, reverse=True)
    by_date = sagemaker.list_workteams(SortBy="CreateDate", SortOrder="Ascending")["Workteams"]
    assert [t["WorkteamName"] for t in by_date] == names

    filtered = sagemaker.list_workteams(NameContains="team-a")["Workteams"]
    assert [t["WorkteamName"] for t in filtered] == [names[1]]

    first = sagemaker.list_workteams(SortBy="Name", MaxResults=2)
    assert [t["WorkteamName"] for t in first["Workteams"]] == sorted(names)[:2]
    assert first["NextToken"]
    second = sagemaker.list_workteams(SortBy="Name", MaxResults=2, NextToken=first["NextToken"])
    assert [t["WorkteamName"] for t in second["Workteams"]] == sorted(names)[2:]
    assert "NextToken" not in second

    paginator = sagemaker.get_paginator("list_workteams")
    pages = list(paginator.paginate(SortBy="Name", PaginationConfig={"PageSize": 1}))
    assert len(pages) == 3
    assert [p["Workteams"][0]["WorkteamName"] for p in pages] == sorted(names)
    full = paginator.paginate(SortBy="Name", PaginationConfig={"PageSize": 2}).build_full_result()
    assert [t["WorkteamName"] for t in full["Workteams"]] == sorted(names)


def test_create_workteam_twice_is_resource_in_use(sagemaker, workforce):
    team = unique_name("team")
    arguments = {
        "WorkteamName": team,
        "MemberDefinitions": cognito_members(),
        "Description": "first",
    }
    sagemaker.create_workteam(**arguments)
    with pytest.raises(sagemaker.exceptions.ResourceInUse) as raised:
        sagemaker.create_workteam(**arguments)
    assert_client_error(raised.value, "ResourceInUse", team)


def test_create_workteam_for_unknown_workforce(sagemaker, workforce):
    with pytest.raises(ClientError) as raised:
        sagemaker.create_workteam(
            WorkteamName=unique_name("team"),
            WorkforceName="not-this-workforce",
            MemberDefinitions=cognito_members(),
            Description="orphan",
        )
    assert_client_error(raised.value, "ValidationException", "No workforce")


def test_delete_missing_workteam(sagemaker):
    with pytest.raises(ClientError) as raised:
        sagemaker.delete_workteam(WorkteamName="missing-team")
    assert_client_error(raised.value, "ValidationException", "The work team")
