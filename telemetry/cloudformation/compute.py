"""ECS: per stage a task role with exactly its declared actions, a task
definition, a service and its scaling rule; the one-off migration task."""

from __future__ import annotations

from typing import Any

from shared.pipeline import (
    QUEUES,
    STAGES,
    STOP_GRACE_S,
    Kind,
    Stage,
)
from telemetry.cloudformation.base import (
    DEFAULTS,
    IMAGE_USER,
    TABLE_IDS,
    Json,
    assume,
    att,
    camel,
    queue_id,
    ref,
    sub,
    when,
)
from telemetry.cloudformation.roles import task_policy
from telemetry.cloudformation.scaling import scaling


def environment(stage: Stage) -> list[Json]:
    """The names of every resource, as the settings read them."""
    names: dict[str, Any] = {
        "AWS_REGION": ref("AWS::Region"),
        "TELEMETRY_BUCKET": ref("Bucket"),
        "TELEMETRY_STREAM": ref("Stream"),
        "TELEMETRY_TOPIC": att("Topic", "TopicName"),
        "TELEMETRY_TOPIC_ARN": ref("Topic"),
        "TELEMETRY_HOST": "0.0.0.0",
        "TELEMETRY_DRAIN_TIMEOUT_S": str(int(DEFAULTS.drain_timeout_s)),
        "TELEMETRY_VISIBILITY_TIMEOUT_S": str(DEFAULTS.visibility_timeout_s),
        "TELEMETRY_MAX_RECEIVES": str(DEFAULTS.max_receives),
    }
    for q in QUEUES:
        names[q.env] = att(queue_id(q), "QueueName")
    for resource, rid in TABLE_IDS.items():
        names[f"TELEMETRY_{resource.value.upper()}"] = ref(rid)
    if stage.kind is not Kind.HTTP:
        names["TELEMETRY_METRICS_PORT"] = "9100"
    env: list[Any] = [{"Name": k, "Value": v} for k, v in sorted(names.items())]
    if stage.database:
        env.append(
            when(
                "CreateDatabase",
                {
                    "Name": "TELEMETRY_DATABASE_URL",
                    "Value": sub(
                        "postgresql://telemetry@${Database.Endpoint.Address}:"
                        "${Database.Endpoint.Port}/telemetry"
                    ),
                },
            )
        )
    return env


def secrets(stage: Stage) -> Any:
    if not stage.database:
        return ref("AWS::NoValue")
    return [
        when(
            "CreateDatabase",
            {
                "Name": "TELEMETRY_DATABASE_PASSWORD",
                "ValueFrom": sub("${Database.MasterUserSecret.SecretArn}:password::"),
            },
            {"Name": "TELEMETRY_DATABASE_URL", "ValueFrom": ref("DatabaseSecretArn")},
        )
    ]


SIZES = {"consolidator": (1024, 4096), "enricher": (1024, 2048), "loader": (1024, 2048)}


def task_definition(family: str, stage: Stage, command: list[str], role: str) -> Json:
    cpu, memory = SIZES.get(stage.name, (512, 1024))
    port = getattr(DEFAULTS, stage.port_setting) if stage.port_setting else None
    container: Json = {
        "Name": "telemetry",
        "Image": ref("ImageUri"),
        "Command": command,
        "Essential": True,
        "User": IMAGE_USER,
        "ReadonlyRootFilesystem": True,
        "Privileged": False,
        "LinuxParameters": {"Capabilities": {"Drop": ["ALL"]}, "InitProcessEnabled": True},
        "MountPoints": [{"SourceVolume": "tmp", "ContainerPath": "/tmp"}],
        # Longer than the drain: ECS sends SIGKILL after this (default 30 s).
        "StopTimeout": STOP_GRACE_S,
        "Environment": environment(stage),
        "Secrets": secrets(stage),
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": ref(f"{camel(stage.name)}Logs"),
                "awslogs-region": ref("AWS::Region"),
                "awslogs-stream-prefix": family,
            },
        },
    }
    if command == [stage.name]:
        container["HealthCheck"] = {
            "Command": ["CMD", "python", "-m", "telemetry.healthcheck"],
            "Interval": 15,
            "Timeout": 5,
            "Retries": 3,
            "StartPeriod": 30,
        }
    if port is not None:
        container["PortMappings"] = [{"ContainerPort": port, "Protocol": "tcp"}]
    return {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": sub("${Name}-" + family),
            "Cpu": str(cpu),
            "Memory": str(memory),
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
            "ExecutionRoleArn": att("ExecutionRole", "Arn"),
            "TaskRoleArn": att(role, "Arn"),
            "Volumes": [{"Name": "tmp"}],
            "ContainerDefinitions": [container],
        },
    }


def stage_resources(stage: Stage) -> Json:
    s = camel(stage.name)
    out: Json = {
        f"{s}Logs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/${Name}/" + stage.name),
                "RetentionInDays": ref("LogRetentionDays"),
                "KmsKeyId": att("DataKey", "Arn"),
            },
        },
        f"{s}Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                "Policies": [
                    {
                        "PolicyName": "declared-actions",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": task_policy(stage),
                        },
                    }
                ],
            },
        },
        f"{s}Task": task_definition(stage.name, stage, [stage.name], f"{s}Role"),
    }
    single = stage.scaling.min == stage.scaling.max == 1
    service: Json = {
        "Cluster": ref("Cluster"),
        "ServiceName": stage.name,
        "TaskDefinition": ref(f"{s}Task"),
        "LaunchType": "FARGATE",
        "DesiredCount": stage.scaling.min,
        "PropagateTags": "SERVICE",
        "EnableExecuteCommand": False,
        "NetworkConfiguration": {
            "AwsvpcConfiguration": {
                "AssignPublicIp": "DISABLED",
                "Subnets": ref("PrivateSubnetIds"),
                "SecurityGroups": [ref("TaskSecurityGroup")],
            }
        },
        # A single stream reader: the old task stops before the new one starts,
        # so two never read the shards at once.
        "DeploymentConfiguration": {
            "MaximumPercent": 100 if single else 200,
            "MinimumHealthyPercent": 0 if single else 100,
            "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
        },
    }
    if stage.kind is Kind.HTTP:
        port = getattr(DEFAULTS, str(stage.port_setting))
        service["LoadBalancers"] = [
            {
                "ContainerName": "telemetry",
                "ContainerPort": port,
                "TargetGroupArn": ref(f"{s}Target"),
            }
        ]
        service["HealthCheckGracePeriodSeconds"] = 60
        out[f"{s}Target"] = {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "VpcId": ref("VpcId"),
                "TargetType": "ip",
                "Protocol": "HTTP",
                "Port": port,
                "HealthCheckPath": "/readyz",
                "HealthCheckIntervalSeconds": 10,
                "HealthyThresholdCount": 2,
                "UnhealthyThresholdCount": 3,
                "Matcher": {"HttpCode": "200"},
                # Deregistered (no new requests) this long before SIGTERM.
                "TargetGroupAttributes": [
                    {"Key": "deregistration_delay.timeout_seconds", "Value": "15"}
                ],
            },
        }
        service["DependsOn"] = f"{s}Route"  # the target group must belong to the ALB
    out[f"{s}Service"] = {
        "Type": "AWS::ECS::Service",
        **({"DependsOn": service.pop("DependsOn")} if "DependsOn" in service else {}),
        "Properties": service,
    }
    if not single:
        out.update(scaling(stage))
    return out


def compute() -> Json:
    secret_arn = when(
        "CreateDatabase", att("Database", "MasterUserSecret.SecretArn"), ref("DatabaseSecretArn")
    )
    migrate = next(s for s in STAGES if s.database)  # same settings, no queue or port
    out: Json = {
        "Cluster": {
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": ref("Name"),
                # RunningTaskCount, which the queue workers' scaling divides by.
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            },
        },
        "ExecutionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                "ManagedPolicyArns": [
                    sub(
                        "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonECSTaskExecutionRolePolicy"
                    )
                ],
                "Policies": [
                    {
                        "PolicyName": "database-secret",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "secretsmanager:GetSecretValue",
                                    "Resource": secret_arn,
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": "kms:Decrypt",
                                    "Resource": att("DataKey", "Arn"),
                                },
                            ],
                        },
                    }
                ],
            },
        },
        "MigrateLogs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/${Name}/migrate"),
                "RetentionInDays": ref("LogRetentionDays"),
                "KmsKeyId": att("DataKey", "Arn"),
            },
        },
        "MigrateRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com")},
        },
    }
    migrate_task = task_definition("migrate", migrate, ["migrate"], "MigrateRole")
    migrate_task["Properties"]["ContainerDefinitions"][0]["LogConfiguration"]["Options"][
        "awslogs-group"
    ] = ref("MigrateLogs")
    out["MigrateTask"] = migrate_task
    for stage in STAGES:
        out.update(stage_resources(stage))
    return out
