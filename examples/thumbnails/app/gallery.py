"""GET /thumbnails: the thumbnails made so far, with their sizes."""

import json
import os

import boto3

s3 = boto3.client("s3")
THUMBNAILS = os.environ.get("THUMBNAILS_BUCKET", "thumbnails")


def handler(event, context):
    listed = s3.list_objects_v2(Bucket=THUMBNAILS).get("Contents", [])
    items = []
    for obj in listed:
        head = s3.head_object(Bucket=THUMBNAILS, Key=obj["Key"])
        items.append(
            {
                "key": obj["Key"],
                "bytes": obj["Size"],
                "size": head["Metadata"].get("size"),
                "source": head["Metadata"].get("source"),
            }
        )
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"thumbnails": items}),
    }
