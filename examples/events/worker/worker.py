"""Logs every event it receives. Queue batches arrive as SQS events; messages whose body
contains "fail" are reported as partial batch failures, so nimbus retries them and finally
moves them to the dead-letter queue `jobs.dlq`."""

import json


def handler(event, context):
    if "Records" in event:
        failures = []
        for record in event["Records"]:
            print(f"message {record['messageId']} (attempt {record['attributes']['ApproximateReceiveCount']}): {record['body']}")
            if "fail" in record["body"]:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
    # EventBridge-shaped: schedule ticks and bus events.
    print(f"{event['detail-type']} from {event['source']}: {json.dumps(event['detail'])}")
    return {"ok": True}
