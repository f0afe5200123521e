"""An ordinary AWS Lambda handler in Python, served by nimbus unchanged."""

import json


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": name, "request_id": context.aws_request_id}),
    }
