"""Make a thumbnail of every image uploaded to the bucket that triggered us."""

import io
import os
import urllib.parse

import boto3
from PIL import Image

s3 = boto3.client("s3")
THUMBNAILS = os.environ.get("THUMBNAILS_BUCKET", "thumbnails")
SIZE = (128, 128)


def handler(event, context):
    made = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        # S3 URL-encodes keys in events ("red flower.jpg" arrives as "red+flower.jpg").
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            image = Image.open(io.BytesIO(original))
            image.thumbnail(SIZE)
        except Exception as error:  # not an image: nothing to make
            print(f"skipped {key}: {error}")
            continue
        out = io.BytesIO()
        image.convert("RGB").save(out, format="PNG")
        name = os.path.splitext(key)[0] + ".png"
        s3.put_object(
            Bucket=THUMBNAILS,
            Key=name,
            Body=out.getvalue(),
            ContentType="image/png",
            Metadata={"source": f"{bucket}/{key}", "size": f"{image.width}x{image.height}"},
        )
        print(f"{bucket}/{key} -> {THUMBNAILS}/{name} ({image.width}x{image.height})")
        made.append(name)
    return {"thumbnails": made}
