"""PUT then GET small objects through boto3 from N threads; or one large object each way.

usage: s3_load.py ENDPOINT small THREADS COUNT SIZE
       s3_load.py ENDPOINT large MIB
Prints one line: `put <objects/s> <p50 ms> <p99 ms> get <objects/s> <p50 ms> <p99 ms>` or
`put <MB/s> get <MB/s>`. Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import concurrent.futures
import os
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def client(endpoint, threads):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(max_pool_connections=max(threads, 10), retries={"max_attempts": 1}),
    )


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def small(endpoint, threads, count, size):
    s3 = client(endpoint, threads)
    bucket = f"bench-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(size)
    keys = [f"k/{i:07d}" for i in range(count)]
    results = []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        # Warm the connection pool.
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key="warm" + k[-2:], Body=body), keys[:threads]))
        for name, op in [
            ("put", lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body)),
            ("get", lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read()),
        ]:
            start = time.perf_counter()
            latencies = list(pool.map(lambda k: timed(lambda: op(k)), keys))
            elapsed = time.perf_counter() - start
            results.append(f"{name} {count / elapsed:.0f} {percentile(latencies, 0.5):.2f} {percentile(latencies, 0.99):.2f}")
    print(" ".join(results))


def large(endpoint, mib):
    s3 = client(endpoint, 10)
    bucket = f"bench-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    path = f"/tmp/s3-bench-{os.getpid()}.bin"
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(chunk)
    config = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    put = timed(lambda: s3.upload_file(path, bucket, "large", Config=config))
    get = timed(lambda: s3.download_file(bucket, "large", path + ".back", Config=config))
    os.remove(path)
    os.remove(path + ".back")
    print(f"put {mib * 1.048576 / put:.0f} get {mib * 1.048576 / get:.0f}")


if __name__ == "__main__":
    endpoint, mode = sys.argv[1], sys.argv[2]
    if mode == "small":
        small(endpoint, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        large(endpoint, int(sys.argv[3]))
