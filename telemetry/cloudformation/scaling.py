"""The scaling rule of each stage: queue workers on their backlog per task,
HTTP services on CPU (the single stream reader has none)."""

from __future__ import annotations

from shared.pipeline import Stage
from telemetry.cloudformation.base import Json, att, camel, queue_id, ref, sub


def scaling(stage: Stage) -> Json:
    s = camel(stage.name)
    resource_id = {"Fn::Join": ["/", ["service", ref("Cluster"), att(f"{s}Service", "Name")]]}
    out: Json = {
        f"{s}Scaling": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": resource_id,
                "MinCapacity": stage.scaling.min,
                "MaxCapacity": stage.scaling.max,
            },
        }
    }
    if stage.scaling.cpu_percent:
        tracking: Json = {
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
            },
            "TargetValue": stage.scaling.cpu_percent,
        }
    else:
        # Visible messages of the stage's queues per running task (AWS's backlog-per-task
        # recipe; MinCapacity is at least 1, so the divisor is never 0).
        metrics: list[Json] = [
            {
                "Id": f"q{i}",
                "ReturnData": False,
                "MetricStat": {
                    "Stat": "Sum",
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateNumberOfMessagesVisible",
                        "Dimensions": [
                            {"Name": "QueueName", "Value": att(queue_id(q), "QueueName")}
                        ],
                    },
                },
            }
            for i, q in enumerate(stage.queues)
        ]
        metrics.append(
            {
                "Id": "tasks",
                "ReturnData": False,
                "MetricStat": {
                    "Stat": "Average",
                    "Metric": {
                        "Namespace": "ECS/ContainerInsights",
                        "MetricName": "RunningTaskCount",
                        "Dimensions": [
                            {"Name": "ClusterName", "Value": ref("Cluster")},
                            {"Name": "ServiceName", "Value": att(f"{s}Service", "Name")},
                        ],
                    },
                },
            }
        )
        total = " + ".join(f"q{i}" for i in range(len(stage.queues)))
        metrics.append(
            {"Id": "backlog", "Label": "messages per task", "ReturnData": True,
             "Expression": f"({total}) / tasks"}
        )  # fmt: skip
        tracking = {
            "CustomizedMetricSpecification": {"Metrics": metrics},
            "TargetValue": stage.scaling.backlog_per_replica,
        }
    out[f"{s}ScalingPolicy"] = {
        "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
        "Properties": {
            "PolicyName": sub("${Name}-" + stage.name),
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": ref(f"{s}Scaling"),
            "TargetTrackingScalingPolicyConfiguration": {
                **tracking,
                "ScaleInCooldown": 120,
                "ScaleOutCooldown": 30,
            },
        },
    }
    return out
