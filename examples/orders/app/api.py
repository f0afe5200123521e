"""The command and query side: POST /orders takes an order once; GET /customers/{customer}
reads the read model the projection keeps."""

import base64
import json
from decimal import Decimal

import boto3
from botocore.exceptions import ClientError

dynamodb = boto3.resource("dynamodb")
orders = dynamodb.Table("orders")
totals = dynamodb.Table("totals")


def answer(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, default=lambda n: int(n) if n == int(n) else float(n)),
    }


def place(event):
    try:
        body = event.get("body") or "{}"
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body)
        order = json.loads(body)
        item = {
            "id": str(order["id"]),
            "customer": str(order["customer"]),
            "total": Decimal(str(order["total"])),
        }
    except (ValueError, KeyError, ArithmeticError):
        return answer(400, {"error": 'send {"id": "...", "customer": "...", "total": 12.5}'})
    try:
        orders.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return answer(409, {"error": f"order {item['id']} exists"})
        raise
    return answer(201, item)


def customer(event):
    name = event["pathParameters"]["customer"]
    found = totals.get_item(Key={"customer": name}).get("Item")
    if found is None:
        return answer(404, {"error": f"no orders from {name} yet"})
    return answer(200, {"customer": name, "orders": found["orders"], "spent": found["spent"]})


def handler(event, context):
    if event["requestContext"]["http"]["method"] == "POST":
        return place(event)
    return customer(event)
