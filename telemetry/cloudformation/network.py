"""The database and the network: security groups, the load balancer and its routes."""

from __future__ import annotations

from shared.pipeline import STAGES, Kind
from telemetry.cloudformation.base import DEFAULTS, Json, assume, att, camel, ref, skip, sub


def database() -> Json:
    on = {"Condition": "CreateDatabase"}
    return {
        "DatabaseSubnets": {
            **on,
            "Type": "AWS::RDS::DBSubnetGroup",
            "Properties": {
                "DBSubnetGroupDescription": sub("${Name} database"),
                "SubnetIds": ref("PrivateSubnetIds"),
            },
        },
        "DatabaseSecurityGroup": {
            **on,
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": sub("${Name} database: PostgreSQL from the tasks only"),
                "VpcId": ref("VpcId"),
                "SecurityGroupIngress": [
                    {
                        "Description": "PostgreSQL from the tasks",
                        "IpProtocol": "tcp",
                        "FromPort": 5432,
                        "ToPort": 5432,
                        "SourceSecurityGroupId": ref("TaskSecurityGroup"),
                    }
                ],
            },
        },
        "DatabaseMonitoringRole": {
            **on,
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": assume("monitoring.rds.amazonaws.com"),
                "ManagedPolicyArns": [
                    sub(
                        "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonRDSEnhancedMonitoringRole"
                    )
                ],
            },
        },
        "Database": {
            **on,
            "Type": "AWS::RDS::DBInstance",
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {
                "Engine": "postgres",
                "EngineVersion": "16.15",  # the major version of development (pgserver)
                "DBInstanceClass": ref("DatabaseInstanceClass"),
                "AllocatedStorage": "100",
                "MaxAllocatedStorage": 1000,
                "StorageType": "gp3",
                "StorageEncrypted": True,
                "KmsKeyId": ref("DataKey"),
                "DBName": "telemetry",
                "MasterUsername": "telemetry",
                "ManageMasterUserPassword": True,  # a secret RDS rotates; tasks read it
                "MasterUserSecret": {"KmsKeyId": ref("DataKey")},
                "MultiAZ": ref("DatabaseMultiAz"),
                "DBSubnetGroupName": ref("DatabaseSubnets"),
                "VPCSecurityGroups": [ref("DatabaseSecurityGroup")],
                "PubliclyAccessible": False,
                "DeletionProtection": True,
                "BackupRetentionPeriod": 14,
                "CopyTagsToSnapshot": True,
                "AutoMinorVersionUpgrade": True,
                "EnableIAMDatabaseAuthentication": True,
                "EnableCloudwatchLogsExports": ["postgresql"],
                "EnablePerformanceInsights": True,
                "PerformanceInsightsKMSKeyId": ref("DataKey"),
                "MonitoringInterval": 60,
                "MonitoringRoleArn": att("DatabaseMonitoringRole", "Arn"),
            },
        },
    }


def network() -> Json:
    http_ports = [getattr(DEFAULTS, str(s.port_setting)) for s in STAGES if s.kind is Kind.HTTP]
    return {
        "LoadBalancerSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": sub("${Name} load balancer: HTTPS in, the services out"),
                "VpcId": ref("VpcId"),
                "SecurityGroupIngress": [
                    {
                        "Description": "HTTPS from the allowed clients",
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "CidrIp": ref("IngressCidr"),
                    }
                ],
            },
        },
        "LoadBalancerEgress": {
            "Type": "AWS::EC2::SecurityGroupEgress",
            "Properties": {
                "Description": "to the HTTP services",
                "GroupId": ref("LoadBalancerSecurityGroup"),
                "IpProtocol": "tcp",
                "FromPort": min(http_ports),
                "ToPort": max(http_ports),
                "DestinationSecurityGroupId": ref("TaskSecurityGroup"),
            },
        },
        "TaskSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": sub("${Name} tasks: from the load balancer; out to AWS and DB"),
                "VpcId": ref("VpcId"),
                "SecurityGroupEgress": [
                    {
                        "Description": "AWS APIs over HTTPS",
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "CidrIp": "0.0.0.0/0",
                    },
                    {
                        "Description": "PostgreSQL",
                        "IpProtocol": "tcp",
                        "FromPort": 5432,
                        "ToPort": 5432,
                        "CidrIp": "0.0.0.0/0",
                    },
                ],
            },
        },
        "TaskIngress": {
            "Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {
                "Description": "from the load balancer",
                "GroupId": ref("TaskSecurityGroup"),
                "IpProtocol": "tcp",
                "FromPort": min(http_ports),
                "ToPort": max(http_ports),
                "SourceSecurityGroupId": ref("LoadBalancerSecurityGroup"),
            },
        },
        "LoadBalancer": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Metadata": skip(
                (
                    "CKV_AWS_91",
                    "Access logs need a log bucket with the region's ELB principal: the"
                    " operator's choice; the services log every error to CloudWatch.",
                ),
                (
                    "CKV2_AWS_28",
                    "A WAF web ACL is the operator's (per-account rules and cost); the"
                    " collector authenticates, validates and bounds every request.",
                ),
            ),
            "Properties": {
                "Type": "application",
                "Scheme": "internet-facing",
                "Subnets": ref("PublicSubnetIds"),
                "SecurityGroups": [ref("LoadBalancerSecurityGroup")],
                "LoadBalancerAttributes": [
                    {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"},
                    {"Key": "deletion_protection.enabled", "Value": "true"},
                ],
            },
        },
        "Listener": {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": ref("LoadBalancer"),
                "Port": 443,
                "Protocol": "HTTPS",
                "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                "Certificates": [{"CertificateArn": ref("CertificateArn")}],
                "DefaultActions": [
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"},
                    }
                ],
            },
        },
        # Only the API is routed: /metrics and the probes stay inside the VPC.
        **{
            f"{camel(name)}Route": route(i, path, f"{camel(name)}Target")
            for i, (name, path) in enumerate(ROUTES.items(), start=1)
        },
    }


# The public paths of each HTTP service (SPEC §3).
ROUTES = {"collector": "/v1/events", "report": "/v1/tenants/*"}


def route(priority: int, path: str, target: str) -> Json:
    return {
        "Type": "AWS::ElasticLoadBalancingV2::ListenerRule",
        "Properties": {
            "ListenerArn": ref("Listener"),
            "Priority": priority,
            "Conditions": [{"Field": "path-pattern", "PathPatternConfig": {"Values": [path]}}],
            "Actions": [{"Type": "forward", "TargetGroupArn": ref(target)}],
        },
    }
