"""The data resources: key, bucket, queues, topic, tables, stream."""

from __future__ import annotations

from shared.layout import CONSOLIDATED, ENRICHED, FILTERED, PARKED, QUARANTINE, RAW
from shared.pipeline import QUEUES, Feed, Resource
from shared.realtime import OPEN_FIELDS, OPEN_INDEX, OPEN_KEY
from telemetry.cloudformation.base import (
    BUCKET_ARN,
    BUCKET_NAME,
    DEFAULTS,
    TABLE_IDS,
    Json,
    att,
    queue_id,
    ref,
    skip,
    sub,
    when,
)
from telemetry.provision import DLQ_RETENTION_S, HASH_KEYS, REALTIME_TTL

# Objects needed only until the next stage read them (and for a replay soon after).
INTERMEDIATE = (FILTERED, CONSOLIDATED, ENRICHED)


def key() -> Json:
    account_root = sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
    return {
        "DataKey": {
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": sub("${Name}: data, queues' topic, logs, database"),
                "EnableKeyRotation": True,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {  # IAM policies of this account decide (the task roles)
                            "Sid": "Account",
                            "Effect": "Allow",
                            "Principal": {"AWS": account_root},
                            "Action": "kms:*",
                            "Resource": "*",
                        },
                        {
                            "Sid": "Logs",
                            "Effect": "Allow",
                            "Principal": {"Service": sub("logs.${AWS::Region}.amazonaws.com")},
                            "Action": [
                                "kms:Encrypt*",
                                "kms:Decrypt*",
                                "kms:ReEncrypt*",
                                "kms:GenerateDataKey*",
                                "kms:Describe*",
                            ],
                            "Resource": "*",
                            "Condition": {
                                "ArnLike": {
                                    "kms:EncryptionContext:aws:logs:arn": sub(
                                        "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                        "${AWS::AccountId}:log-group:/${Name}/*"
                                    )
                                }
                            },
                        },
                    ],
                },
            },
        }
    }


def lifecycle() -> Json:
    rules: list[Json] = [
        {
            "Id": "raw",
            "Status": "Enabled",
            "Prefix": f"{RAW}/",
            "Transitions": [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}],
            "ExpirationInDays": ref("RawRetentionDays"),
        },
    ]
    for prefix in (QUARANTINE, PARKED):  # kept as long as what they were refused from
        rules.append(
            {
                "Id": prefix,
                "Status": "Enabled",
                "Prefix": f"{prefix}/",
                "ExpirationInDays": ref("RawRetentionDays"),
            }
        )
    for prefix in INTERMEDIATE:
        rules.append(
            {
                "Id": prefix,
                "Status": "Enabled",
                "Prefix": f"{prefix}/",
                "ExpirationInDays": ref("IntermediateRetentionDays"),
            }
        )
    rules.append(
        {  # store/ is the event store and never expires; compaction leaves old versions
            "Id": "old-versions-and-uploads",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        }
    )
    return {"Rules": rules}


def bucket() -> Json:
    notifications = [
        {
            "Event": "s3:ObjectCreated:*",
            "Queue": att(queue_id(q), "Arn"),
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": f"{q.prefix}/"}]}},
        }
        for q in QUEUES
        if q.feed is Feed.BUCKET
    ]
    return {
        "Bucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            # S3 checks that it may send to each queue when the bucket is made.
            "DependsOn": [queue_id(q) + "Policy" for q in QUEUES if q.feed is Feed.BUCKET],
            "Metadata": skip(
                (
                    "CKV_AWS_18",
                    "Only the stages' task roles reach the bucket; access logs would add a PUT"
                    " per request. Enable CloudTrail S3 data events for an audit trail.",
                ),
                (
                    "CKV_AWS_144",
                    "Cross-region replication is a disaster-recovery choice of the operator;"
                    " raw/ can rebuild everything else.",
                ),
            ),
            "Properties": {
                "BucketName": sub(BUCKET_NAME),
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": att("DataKey", "Arn"),
                            },
                            # One KMS call per bucket key, not per object.
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "VersioningConfiguration": {"Status": "Enabled"},
                "LifecycleConfiguration": lifecycle(),
                "NotificationConfiguration": {"QueueConfigurations": notifications},
            },
        },
        "BucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("Bucket"),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [sub(BUCKET_ARN), sub(BUCKET_ARN + "/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


SSE_SQS = skip(
    (
        "CKV_AWS_27",
        "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which checkov does not read;"
        " a KMS key would need S3 and SNS in its policy and KMS calls for every message.",
    )
)


def queues() -> Json:
    out: Json = {}
    for q in QUEUES:
        qid = queue_id(q)
        name = q.name(DEFAULTS).removeprefix("telemetry-")
        out[qid + "Dlq"] = {
            "Type": "AWS::SQS::Queue",
            "Metadata": SSE_SQS,
            "Properties": {
                "QueueName": sub("${Name}-" + name + "-dlq"),
                "MessageRetentionPeriod": DLQ_RETENTION_S,
                "SqsManagedSseEnabled": True,
            },
        }
        out[qid] = {
            "Type": "AWS::SQS::Queue",
            "Metadata": SSE_SQS,
            "Properties": {
                "QueueName": sub("${Name}-" + name),
                "VisibilityTimeout": DEFAULTS.visibility_timeout_s,
                # The worker dead-letters with the reason after TELEMETRY_MAX_RECEIVES;
                # this is the backstop for a worker that dies on a message every time.
                "RedrivePolicy": {
                    "deadLetterTargetArn": att(qid + "Dlq", "Arn"),
                    "maxReceiveCount": DEFAULTS.max_receives + 2,
                },
                # SSE-SQS: S3 and SNS may send to it without a key policy of ours.
                "SqsManagedSseEnabled": True,
            },
        }
        if q.feed is Feed.BUCKET:
            service, source = "s3.amazonaws.com", sub(BUCKET_ARN)
        else:
            service, source = "sns.amazonaws.com", ref("Topic")
        out[qid + "Policy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref(qid)],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "OnlyOurSource",
                            "Effect": "Allow",
                            "Principal": {"Service": service},
                            "Action": "sqs:SendMessage",
                            "Resource": att(qid, "Arn"),
                            "Condition": {
                                "ArnEquals": {"aws:SourceArn": source},
                                "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
                            },
                        }
                    ],
                },
            },
        }
    return out


def topic() -> Json:
    out: Json = {
        "Topic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": sub("${Name}-" + DEFAULTS.topic.removeprefix("telemetry-")),
                "KmsMasterKeyId": ref("DataKey"),
            },
        }
    }
    for q in QUEUES:
        if q.feed is Feed.TOPIC:
            out[queue_id(q) + "Subscription"] = {
                "Type": "AWS::SNS::Subscription",
                "Properties": {
                    "TopicArn": ref("Topic"),
                    "Protocol": "sqs",
                    "Endpoint": att(queue_id(q), "Arn"),
                    "RawMessageDelivery": True,
                },
            }
    return out


def table(resource: Resource) -> Json:
    default_name = str(getattr(DEFAULTS, resource.value)).removeprefix("telemetry-")
    props: Json = {
        "TableName": sub("${Name}-" + default_name),
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": ref("DataKey"),
        },
        "DeletionProtectionEnabled": True,
    }
    if resource in HASH_KEYS:
        hash_key = HASH_KEYS[resource]
        props["KeySchema"] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        props["AttributeDefinitions"] = [{"AttributeName": hash_key, "AttributeType": "S"}]
    else:
        props["KeySchema"] = [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "ticket_id", "KeyType": "RANGE"},
        ]
        props["AttributeDefinitions"] = [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("tenant_id", "ticket_id", OPEN_KEY)
        ]
        props["GlobalSecondaryIndexes"] = [
            {
                "IndexName": OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": OPEN_KEY, "KeyType": "HASH"},
                    {"AttributeName": "ticket_id", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(OPEN_FIELDS)},
            }
        ]
        props["TimeToLiveSpecification"] = {"AttributeName": REALTIME_TTL, "Enabled": True}
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": props,
    }


def stream() -> Json:
    return {
        "Stream": {
            "Type": "AWS::Kinesis::Stream",
            "Properties": {
                "Name": sub("${Name}-" + DEFAULTS.stream.removeprefix("telemetry-")),
                "StreamModeDetails": {
                    "StreamMode": when("OnDemandStream", "ON_DEMAND", "PROVISIONED")
                },
                "ShardCount": when("OnDemandStream", ref("AWS::NoValue"), ref("StreamShards")),
                "StreamEncryption": {"EncryptionType": "KMS", "KeyId": ref("DataKey")},
            },
        }
    }


def data_resources() -> Json:
    """Everything that holds data; what the moto test creates through CloudFormation."""
    out: Json = {**key(), **bucket(), **queues(), **topic(), **stream()}
    for resource, rid in TABLE_IDS.items():
        out[rid] = table(resource)
    return out
