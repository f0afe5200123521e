"""The projection: each new order (an INSERT record of the orders table's stream) adds to its
customer's totals. Records may arrive more than once, so applying one is idempotent: the
update is conditional on the order not being counted yet."""

import boto3
from botocore.exceptions import ClientError
from boto3.dynamodb.types import TypeDeserializer

totals = boto3.resource("dynamodb").Table("totals")
deserialize = TypeDeserializer().deserialize


def handler(event, context):
    for record in event["Records"]:
        order = {k: deserialize(v) for k, v in record["dynamodb"]["NewImage"].items()}
        try:
            totals.update_item(
                Key={"customer": order["customer"]},
                UpdateExpression="ADD orders :one, spent :total, counted :id",
                ConditionExpression="attribute_not_exists(counted) OR NOT contains(counted, :order)",
                ExpressionAttributeValues={
                    ":one": 1,
                    ":total": order["total"],
                    ":id": {order["id"]},
                    ":order": order["id"],
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                # Retried from this record on, as Lambda does.
                return {"batchItemFailures": [
                    {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}
                ]}
    return {"batchItemFailures": []}
