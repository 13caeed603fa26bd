"""EC2 VPC describe calls (EC2 Query protocol), as botocore sends and parses them."""

import copy
import datetime

import pytest
from botocore.exceptions import ClientError

from conftest import (
    COGNITO,
    DEFAULT_ACCOUNT,
    ROUTE_TABLE_A,
    S3_ENDPOINT_A,
    SG_A1,
    SG_A2,
    SG_B1,
    SUBNET_A1,
    SUBNET_A2,
    SUBNET_A3,
    SUBNET_A4_UNSUPPORTED,
    SUBNET_B1,
    VPC_A,
    VPC_B,
    VPC_C,
    assert_client_error,
    unique_name,
)

LABELING_SERVICE = "com.amazonaws.us-east-1.sagemaker.labeling"
S3_SERVICE = "com.amazonaws.us-east-1.s3"


def endpoint_by_id(ec2, endpoint_id):
    endpoints = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"]
    assert len(endpoints) == 1
    return endpoints[0]


def test_describe_vpcs(ec2):
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert [v["VpcId"] for v in vpcs] == [VPC_A, VPC_B]

    vpc = ec2.describe_vpcs(VpcIds=[VPC_A])["Vpcs"][0]
    assert vpc["VpcId"] == VPC_A
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert vpc["State"] == "available"
    assert vpc["OwnerId"] == DEFAULT_ACCOUNT
    assert vpc["IsDefault"] is False
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlock"] == "10.0.0.0/16"
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"


def test_describe_vpcs_other_region(client_factory):
    ec2 = client_factory("ec2", region="us-west-2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [VPC_C]}])["Vpcs"]
    assert [v["VpcId"] for v in vpcs] == [VPC_C]
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpcs(VpcIds=[VPC_A])
    assert_client_error(raised.value, "InvalidVpcID.NotFound", VPC_A)


@pytest.mark.parametrize(
    ("vpc_id", "support", "hostnames"),
    [(VPC_A, True, True), (VPC_B, True, False)],
)
def test_describe_vpc_attribute(ec2, vpc_id, support, hostnames):
    response = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsSupport")
    assert response["VpcId"] == vpc_id
    assert response["EnableDnsSupport"] == {"Value": support}
    assert "EnableDnsHostnames" not in response

    response = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")
    assert response["VpcId"] == vpc_id
    assert response["EnableDnsHostnames"] == {"Value": hostnames}


def test_describe_subnets_zones(ec2):
    subnets = ec2.describe_subnets(SubnetIds=[SUBNET_A1, SUBNET_A2, SUBNET_A3, SUBNET_A4_UNSUPPORTED])
    zones = {s["SubnetId"]: (s["AvailabilityZone"], s["AvailabilityZoneId"]) for s in subnets["Subnets"]}
    assert zones == {
        SUBNET_A1: ("us-east-1a", "use1-az1"),
        SUBNET_A2: ("us-east-1b", "use1-az2"),
        SUBNET_A3: ("us-east-1c", "use1-az4"),
        SUBNET_A4_UNSUPPORTED: ("us-east-1e", "use1-az3"),
    }
    first = subnets["Subnets"][0]
    assert first["VpcId"] == VPC_A
    assert first["CidrBlock"] == "10.0.1.0/24"
    assert first["State"] == "available"
    assert first["AvailableIpAddressCount"] == 251
    assert first["SubnetArn"] == f"arn:aws:ec2:us-east-1:{DEFAULT_ACCOUNT}:subnet/{SUBNET_A1}"


def test_describe_subnets_filters(ec2):
    in_vpc_b = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [VPC_B]}])["Subnets"]
    assert [s["SubnetId"] for s in in_vpc_b] == [SUBNET_B1]

    zone_a = ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}]
    )["Subnets"]
    assert sorted(s["SubnetId"] for s in zone_a) == sorted([SUBNET_A1, SUBNET_B1])

    zone_id = ec2.describe_subnets(
        Filters=[
            {"Name": "availability-zone-id", "Values": ["use1-az3", "use1-az2"]},
            {"Name": "vpc-id", "Values": [VPC_A]},
        ]
    )["Subnets"]
    assert sorted(s["SubnetId"] for s in zone_id) == sorted([SUBNET_A2, SUBNET_A4_UNSUPPORTED])


def test_describe_security_groups(ec2):
    groups = ec2.describe_security_groups(GroupIds=[SG_A2, SG_A1])["SecurityGroups"]
    assert [g["GroupId"] for g in groups] == [SG_A2, SG_A1]
    assert all(g["VpcId"] == VPC_A for g in groups)
    assert all(g["OwnerId"] == DEFAULT_ACCOUNT for g in groups)
    assert all(g["GroupName"] for g in groups)

    in_vpc_b = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [VPC_B]}])
    assert [g["GroupId"] for g in in_vpc_b["SecurityGroups"]] == [SG_B1]

    name = groups[0]["GroupName"]
    by_name = ec2.describe_security_groups(GroupNames=[name])["SecurityGroups"]
    assert [g["GroupId"] for g in by_name] == [SG_A2]


def test_describe_route_tables_by_subnet(ec2):
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [SUBNET_A2]}]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in tables] == [ROUTE_TABLE_A]
    table = tables[0]
    assert table["VpcId"] == VPC_A
    associated = [a["SubnetId"] for a in table["Associations"] if "SubnetId" in a]
    assert SUBNET_A2 in associated
    assert all(a["AssociationState"]["State"] == "associated" for a in table["Associations"])
    gateways = [r.get("GatewayId") for r in table["Routes"]]
    assert "local" in gateways
    assert S3_ENDPOINT_A in gateways

    none = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [SUBNET_B1]}]
    )["RouteTables"]
    assert none == []


def test_describe_s3_gateway_endpoint(ec2):
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[
            {"Name": "service-name", "Values": [S3_SERVICE]},
            {"Name": "vpc-id", "Values": [VPC_A]},
        ]
    )["VpcEndpoints"]
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert endpoint["VpcEndpointId"] == S3_ENDPOINT_A
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["State"] == "available"
    assert endpoint["RouteTableIds"] == [ROUTE_TABLE_A]
    assert endpoint["RequesterManaged"] is False
    assert isinstance(endpoint["CreationTimestamp"], datetime.datetime)

    in_vpc_b = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [VPC_B]}])
    assert in_vpc_b["VpcEndpoints"] == []
    gateways = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-type", "Values": ["Gateway"]}]
    )["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in gateways] == [S3_ENDPOINT_A]


def test_workforce_interface_endpoint(sagemaker, ec2, control):
    name = unique_name()
    subnets = [SUBNET_A1, SUBNET_A2]
    groups = [SG_A1, SG_A2]
    control.stick("us-east-1", name)
    started = datetime.datetime.now(datetime.timezone.utc)
    sagemaker.create_workforce(
        WorkforceName=name,
        CognitoConfig=COGNITO,
        WorkforceVpcConfig={"VpcId": VPC_A, "SecurityGroupIds": groups, "Subnets": subnets},
    )
    assert "VpcEndpointId" not in sagemaker.describe_workforce(WorkforceName=name)["Workforce"][
        "WorkforceVpcConfig"
    ]

    interface = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-type", "Values": ["Interface"]}]
    )["VpcEndpoints"]
    assert len(interface) == 1
    endpoint = interface[0]
    endpoint_id = endpoint["VpcEndpointId"]
    assert endpoint["State"] == "pending"
    assert endpoint["VpcId"] == VPC_A
    assert endpoint["ServiceName"] == LABELING_SERVICE
    assert endpoint["SubnetIds"] == subnets
    assert [g["GroupId"] for g in endpoint["Groups"]] == groups
    assert all(g["GroupName"] for g in endpoint["Groups"])
    assert endpoint["RequesterManaged"] is True
    assert endpoint["PrivateDnsEnabled"] is False
    assert len(endpoint["NetworkInterfaceIds"]) == len(subnets)
    assert len(endpoint["DnsEntries"]) == len(subnets) + 1
    assert all(e["DnsName"].endswith(".vpce.amazonaws.com") for e in endpoint["DnsEntries"])
    assert all(e["HostedZoneId"] for e in endpoint["DnsEntries"])
    assert endpoint["OwnerId"] == DEFAULT_ACCOUNT
    assert abs((endpoint["CreationTimestamp"] - started).total_seconds()) < 60

    by_service = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "service-name", "Values": [LABELING_SERVICE]}]
    )["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in by_service] == [endpoint_id]
    by_id_filter = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-id", "Values": [endpoint_id]}]
    )["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in by_id_filter] == [endpoint_id]
    pending = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-state", "Values": ["pending"]}]
    )["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in pending] == [endpoint_id]

    control.stick("us-east-1", name, stuck=False)
    workforce = sagemaker.describe_workforce(WorkforceName=name)["Workforce"]
    assert workforce["WorkforceVpcConfig"]["VpcEndpointId"] == endpoint_id
    assert endpoint_by_id(ec2, endpoint_id)["State"] == "available"

    control.stick("us-east-1", name)
    sagemaker.delete_workforce(WorkforceName=name)
    assert endpoint_by_id(ec2, endpoint_id)["State"] == "deleting"
    control.stick("us-east-1", name, stuck=False)
    sagemaker.list_workforces()
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])
    assert_client_error(raised.value, "InvalidVpcEndpointId.NotFound", endpoint_id)


def test_describe_vpc_endpoint_services(ec2):
    response = ec2.describe_vpc_endpoint_services()
    assert LABELING_SERVICE in response["ServiceNames"]
    assert S3_SERVICE in response["ServiceNames"]
    details = {d["ServiceName"]: d for d in response["ServiceDetails"]}
    labeling = details[LABELING_SERVICE]
    assert labeling["ServiceType"] == [{"ServiceType": "Interface"}]
    assert "us-east-1e" not in labeling["AvailabilityZones"]
    assert "us-east-1a" in labeling["AvailabilityZones"]
    assert details[S3_SERVICE]["ServiceType"] == [{"ServiceType": "Gateway"}]

    filtered = ec2.describe_vpc_endpoint_services(ServiceNames=[S3_SERVICE])
    assert filtered["ServiceNames"] == [S3_SERVICE]


NOT_FOUND_CASES = [
    ("describe_vpcs", "VpcIds", "Vpcs", VPC_A, "vpc-0ffffffffffffffff", "InvalidVpcID.NotFound", "The vpc ID 'vpc-0ffffffffffffffff' does not exist"),
    ("describe_subnets", "SubnetIds", "Subnets", SUBNET_A1, "subnet-0ffffffffffffffff", "InvalidSubnetID.NotFound", "The subnet ID 'subnet-0ffffffffffffffff' does not exist"),
    ("describe_security_groups", "GroupIds", "SecurityGroups", SG_A1, "sg-0ffffffffffffffff", "InvalidGroup.NotFound", "The security group 'sg-0ffffffffffffffff' does not exist"),
    ("describe_vpc_endpoints", "VpcEndpointIds", "VpcEndpoints", S3_ENDPOINT_A, "vpce-0ffffffffffffffff", "InvalidVpcEndpointId.NotFound", "vpce-0ffffffffffffffff"),
    ("describe_route_tables", "RouteTableIds", "RouteTables", ROUTE_TABLE_A, "rtb-0ffffffffffffffff", "InvalidRouteTableID.NotFound", "rtb-0ffffffffffffffff"),
]


@pytest.mark.parametrize(
    ("operation", "argument", "result_key", "known", "unknown", "code", "message"),
    NOT_FOUND_CASES,
    ids=["vpc", "subnet", "security-group", "vpc-endpoint", "route-table"],
)
def test_mixed_ids_fail_as_whole(ec2, operation, argument, result_key, known, unknown, code, message):
    call = getattr(ec2, operation)
    assert len(call(**{argument: [known]})[result_key]) == 1

    with pytest.raises(ClientError) as raised:
        call(**{argument: [known, unknown]})
    assert_client_error(raised.value, code, message)


MALFORMED_CASES = [
    ("describe_vpcs", "VpcIds", "vpc-XYZ!", "InvalidVpcID.Malformed"),
    ("describe_subnets", "SubnetIds", "subnet-ZZ", "InvalidSubnetID.Malformed"),
    ("describe_security_groups", "GroupIds", "sg-", "InvalidGroupId.Malformed"),
    ("describe_vpc_endpoints", "VpcEndpointIds", "vpce-!!", "InvalidVpcEndpointId.Malformed"),
    ("describe_route_tables", "RouteTableIds", "rtb-0123", "InvalidRouteTableId.Malformed"),
]


@pytest.mark.parametrize(
    ("operation", "argument", "malformed", "code"),
    MALFORMED_CASES,
    ids=["vpc", "subnet", "security-group", "vpc-endpoint", "route-table"],
)
def test_malformed_id_rejected(ec2, operation, argument, malformed, code):
    with pytest.raises(ClientError) as raised:
        getattr(ec2, operation)(**{argument: [malformed]})
    assert_client_error(raised.value, code, f'Invalid id: "{malformed}"')


def test_vpc_attribute_unknown_vpc(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpc_attribute(VpcId="vpc-0ffffffffffffffff", Attribute="enableDnsSupport")
    assert_client_error(raised.value, "InvalidVpcID.NotFound", "vpc-0ffffffffffffffff")


def test_unsupported_filter_rejected(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpcs(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert_client_error(raised.value, "InvalidParameterValue", "no-such-filter")


def test_filter_values_take_wildcards(ec2):
    s3 = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "service-name", "Values": ["com.amazonaws.*.s3"]}]
    )["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in s3] == [S3_ENDPOINT_A]

    zone = ec2.describe_subnets(
        Filters=[
            {"Name": "availability-zone", "Values": ["us-east-1?"]},
            {"Name": "vpc-id", "Values": ["vpc-0a*"]},
        ]
    )["Subnets"]
    assert len(zone) == 4

    none = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": ["vpc-0a"]}])["Vpcs"]
    assert none == []


@pytest.mark.parametrize(
    "operation",
    [
        "describe_vpcs",
        "describe_subnets",
        "describe_security_groups",
        "describe_vpc_endpoints",
        "describe_route_tables",
    ],
)
def test_tag_filters_match_untagged_nothing(ec2, operation):
    call = getattr(ec2, operation)
    for name in ("tag:Name", "tag-key"):
        response = call(Filters=[{"Name": name, "Values": ["workforce"]}])
        results = [value for key, value in response.items() if key != "ResponseMetadata"]
        assert results == [[]], response


def test_network_address_usage_metrics_attribute(ec2):
    response = ec2.describe_vpc_attribute(
        VpcId=VPC_A, Attribute="enableNetworkAddressUsageMetrics"
    )
    assert response["EnableNetworkAddressUsageMetrics"] == {"Value": False}


def test_unknown_action(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances()
    assert_client_error(raised.value, "InvalidAction", "DescribeInstances")


def test_invalid_next_token(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpcs(NextToken="not-a-token")
    assert_client_error(raised.value, "InvalidPaginationToken", "not-a-token")


def test_max_results_out_of_range(ec2_raw):
    with pytest.raises(ClientError) as raised:
        ec2_raw.describe_vpcs(MaxResults=2)
    assert_client_error(raised.value, "InvalidParameterValue", "maxResults")


def test_dry_run(ec2):
    with pytest.raises(ClientError) as raised:
        ec2.describe_vpcs(DryRun=True)
    error = raised.value.response
    assert error["Error"]["Code"] == "DryRunOperation"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 412


def paging_topology(built_in):
    """Return the built-in topology plus an eu-west-1 region with enough resources to page."""
    topology = copy.deepcopy(built_in)
    zones = [
        {"zone_name": f"eu-west-1{letter}", "zone_id": f"euw1-az{index + 1}", "workforce_supported": True}
        for index, letter in enumerate("abc")
    ]
    vpcs = [
        {
            "vpc_id": f"vpc-0e{index:015x}",
            "cidr_block": f"10.{index}.0.0/16",
            "enable_dns_support": True,
            "enable_dns_hostnames": True,
        }
        for index in range(7)
    ]
    subnets = [
        {
            "subnet_id": f"subnet-0e{index:015x}",
            "vpc_id": vpcs[0]["vpc_id"],
            "availability_zone": zones[index % 3]["zone_name"],
            "cidr_block": f"10.0.{index}.0/24",
        }
        for index in range(7)
    ]
    groups = [
        {
            "group_id": f"sg-0e{index:015x}",
            "group_name": f"group-{index}",
            "vpc_id": vpcs[0]["vpc_id"],
            "description": "paging",
        }
        for index in range(7)
    ]
    tables = [
        {"route_table_id": f"rtb-0e{index:015x}", "vpc_id": vpcs[index]["vpc_id"]}
        for index in range(7)
    ]
    endpoints = [
        {
            "vpc_endpoint_id": f"vpce-0e{index:015x}",
            "vpc_endpoint_type": "Gateway",
            "vpc_id": vpcs[index]["vpc_id"],
            "service_name": "com.amazonaws.eu-west-1.s3",
            "route_table_ids": [tables[index]["route_table_id"]],
        }
        for index in range(3)
    ]
    region = {
        "availability_zones": zones,
        "vpcs": vpcs,
        "subnets": subnets,
        "security_groups": groups,
        "route_tables": tables,
        "vpc_endpoints": endpoints,
    }
    topology["accounts"][topology["default_account"]]["regions"]["eu-west-1"] = region
    return topology


@pytest.mark.parametrize(
    ("operation", "result_key", "id_key", "total"),
    [
        ("describe_vpcs", "Vpcs", "VpcId", 7),
        ("describe_subnets", "Subnets", "SubnetId", 7),
        ("describe_security_groups", "SecurityGroups", "GroupId", 7),
        ("describe_route_tables", "RouteTables", "RouteTableId", 7),
        ("describe_vpc_endpoints", "VpcEndpoints", "VpcEndpointId", 3),
    ],
)
def test_pagination(client_factory, control, built_in_topology, operation, result_key, id_key, total):
    control.request("PUT", "/topology", paging_topology(built_in_topology))
    ec2 = client_factory("ec2", region="eu-west-1")
    call = getattr(ec2, operation)
    page_size = 1 if operation == "describe_vpc_endpoints" else 5

    everything = [item[id_key] for item in call()[result_key]]
    assert len(everything) == total

    collected = []
    token = None
    pages = 0
    while True:
        arguments = {"MaxResults": page_size}
        if token:
            arguments["NextToken"] = token
        response = call(**arguments)
        pages += 1
        assert len(response[result_key]) <= page_size
        collected.extend(item[id_key] for item in response[result_key])
        token = response.get("NextToken")
        if not token:
            break
    assert collected == everything
    assert pages == -(-total // page_size)

    paginator = ec2.get_paginator(operation)
    paged = list(paginator.paginate(PaginationConfig={"PageSize": page_size}))
    assert len(paged) == pages
    full = paginator.paginate(PaginationConfig={"PageSize": page_size}).build_full_result()
    assert [item[id_key] for item in full[result_key]] == everything


def test_endpoint_services_paginator(client_factory):
    ec2 = client_factory("ec2")
    everything = ec2.describe_vpc_endpoint_services()["ServiceNames"]
    paginator = ec2.get_paginator("describe_vpc_endpoint_services")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) == len(everything)
    assert [name for page in pages for name in page["ServiceNames"]] == everything
