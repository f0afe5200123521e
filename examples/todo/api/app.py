"""The to-do API: an unmodified Lambda handler. Who calls comes from the verified token's
claims (API Gateway's requestContext.authorizer.jwt); each to-do is one entry of the app's
key-value store (the local API), under `user/<sub>/<id>`, so concurrent writes never lose one;
answers are signed with a secret the platform puts in the environment."""

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

API = os.environ["NIMBUS_API"]
AUTH = {"Authorization": "Bearer " + os.environ["NIMBUS_API_TOKEN"]}
SIGNING_KEY = os.environ["SIGNING_KEY"].encode()


def call(method, path, body=None):
    request = urllib.request.Request(API + path, data=body, method=method, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def key_path(key):
    return "/v1/kv/todos/keys/" + urllib.parse.quote(key, safe="")


def count(delta):
    """Add `delta` to the to-do counter (atomically, in the store) and return it."""
    return json.loads(call("POST", f"/v1/kv/todos/increment/count?delta={delta}", b""))["value"]


def todos_of(user):
    prefix, after, found = f"user/{user}/", f"user/{user}/", []
    while True:
        query = urllib.parse.urlencode({"after": after, "limit": 100})
        page = json.loads(call("GET", f"/v1/kv/todos/keys?{query}"))
        mine = [k for k in page["keys"] if k.startswith(prefix)]
        for key in mine:
            value = call("GET", key_path(key))
            if value is not None:
                found.append({"id": key[len(prefix):], **json.loads(value)})
        if len(mine) < len(page["keys"]) or not page.get("next"):
            return found
        after = page["next"]


def answer(status, body):
    text = json.dumps(body)
    signature = hmac.new(SIGNING_KEY, text.encode(), hashlib.sha256).hexdigest()
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "x-todo-signature": signature},
        "body": text,
    }


def handler(event, context):
    method = event["requestContext"]["http"]["method"]
    path = event["rawPath"]
    if path == "/stats":
        return answer(200, {"todos": count(0)})

    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    user = claims["sub"]
    rest = path.removeprefix("/todos").strip("/")
    if method == "GET" and not rest:
        return answer(200, {"user": claims.get("email"), "todos": todos_of(user)})
    if method == "POST" and not rest:
        try:
            title = json.loads(event.get("body") or "{}")["title"].strip()
        except (ValueError, KeyError, AttributeError, TypeError):
            return answer(400, {"error": 'send {"title": "…"}'})
        if not title or len(title) > 200:
            return answer(400, {"error": "a title is 1 to 200 characters"})
        # Time first, so a user's keys list in the order they were added.
        todo_id = f"{time.time_ns():016x}{os.urandom(4).hex()}"
        call("PUT", key_path(f"user/{user}/{todo_id}"), json.dumps({"title": title}).encode())
        count(1)
        return answer(201, {"id": todo_id, "title": title})
    if method == "DELETE" and rest and "/" not in rest:
        deleted = json.loads(call("DELETE", key_path(f"user/{user}/{rest}")))["deleted"]
        if not deleted:
            return answer(404, {"error": f"no to-do {rest}"})
        count(-1)
        return answer(200, {"deleted": rest})
    return answer(405, {"error": f"{method} {path} is not served"})
