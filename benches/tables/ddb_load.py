"""DynamoDB load from boto3 threads: PutItem, GetItem, a 100-item Query, conditional
increments. Prints one line: ops/s p50_ms p99_ms for each phase, in that order.

    python3 ddb_load.py ENDPOINT THREADS COUNT

Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Creates table `bench-N` (N
random), so rounds do not share data.
"""

import concurrent.futures
import random
import statistics
import sys
import threading
import time

import boto3
from botocore.config import Config

endpoint, threads, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
local = threading.local()


def client():
    if not hasattr(local, "client"):
        local.client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, max_pool_connections=threads),
        )
    return local.client


table = f"bench-{random.randrange(1 << 30)}"
client().create_table(
    TableName=table,
    KeySchema=[
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    AttributeDefinitions=[
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ],
    BillingMode="PAY_PER_REQUEST",
)
payload = "x" * 100


def run(operation, n):
    """Run operation(i) for i in range(n) over the threads; (ops/s, p50 ms, p99 ms)."""
    latencies = [0.0] * n

    def one(i):
        start = time.perf_counter()
        operation(i)
        latencies[i] = (time.perf_counter() - start) * 1000

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return n / elapsed, statistics.median(latencies), latencies[int(n * 0.99) - 1]


def put(i):
    client().put_item(
        TableName=table,
        Item={"pk": {"S": f"user-{i}"}, "sk": {"N": "0"}, "data": {"S": payload}},
    )


def get(i):
    got = client().get_item(TableName=table, Key={"pk": {"S": f"user-{i}"}, "sk": {"N": "0"}})
    assert "Item" in got


for i in range(100):
    client().put_item(
        TableName=table, Item={"pk": {"S": "query"}, "sk": {"N": str(i)}, "data": {"S": payload}}
    )


def query(_):
    got = client().query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "query"}},
    )
    assert got["Count"] == 100, got["Count"]


client().put_item(TableName=table, Item={"pk": {"S": "counter"}, "sk": {"N": "0"}, "n": {"N": "0"}})


def increment(_):
    client().update_item(
        TableName=table,
        Key={"pk": {"S": "counter"}, "sk": {"N": "0"}},
        UpdateExpression="SET n = n + :one",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


results = [run(put, count), run(get, count), run(query, max(count // 10, 10)), run(increment, count)]
final = client().get_item(TableName=table, Key={"pk": {"S": "counter"}, "sk": {"N": "0"}})
assert final["Item"]["n"]["N"] == str(count), final
print(" ".join(f"{rate:.0f} {p50:.2f} {p99:.2f}" for rate, p50, p99 in results))
