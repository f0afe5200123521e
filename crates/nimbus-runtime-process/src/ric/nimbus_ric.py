"""nimbus's runtime interface client for Python.

Loads the handler named by _HANDLER ("module.function") from LAMBDA_TASK_ROOT and serves
invocations over the AWS Lambda Runtime API at AWS_LAMBDA_RUNTIME_API, as Lambda's Python
runtime does. Standard library only.
"""

import importlib
import json
import os
import socket
import sys
import time

BASE = "/2018-06-01/runtime"


class RuntimeApi:
    """A keep-alive HTTP/1.1 client for the Runtime API, on a plain socket: importing
    http.client costs ~20 ms of every cold start, for features this loop never needs."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.sock = None
        self.buffer = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.address)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return self._exchange(method, path, body or b"", headers or {})
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def _exchange(self, method, path, body, headers):
        lines = [f"{method} {BASE}{path} HTTP/1.1", f"Host: {self.address[0]}", f"Content-Length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        response_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        payload = self._read_exactly(int(response_headers.get("content-length") or 0))
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, payload

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.buffer += chunk

    def _read_until(self, marker):
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                head, self.buffer = self.buffer[:at], self.buffer[at + len(marker):]
                return head
            self._fill()

    def _read_exactly(self, length):
        while len(self.buffer) < length:
            self._fill()
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return payload


class LambdaContext:
    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"function_name={self.function_name},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


def error_document(error):
    import traceback

    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


def report(error, request_id=None):
    import traceback

    document = error_document(error)
    prefix = f"[ERROR] {document['errorType']}: {document['errorMessage']}"
    print(prefix, file=sys.stderr)
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return json.dumps(document).encode()


def load_handler(spec):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"Bad handler '{spec}': expected module.function")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name, None)
    if handler is None or not callable(handler):
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def optional_json(headers, name):
    value = headers.get(name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def main():
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    sys.path.insert(0, task_root)
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except Exception as error:  # an import error, a syntax error, a missing function
        document = report(error)
        api.request("POST", "/init/error", document, {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
        sys.exit(1)

    while True:
        status, headers, body = api.request("GET", "/invocation/next")
        if status != 200:
            sys.exit(0)
        request_id = headers.get("lambda-runtime-aws-request-id")
        trace = headers.get("lambda-runtime-trace-id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = LambdaContext(
            request_id,
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            headers.get("lambda-runtime-invoked-function-arn"),
            optional_json(headers, "lambda-runtime-client-context"),
            optional_json(headers, "lambda-runtime-cognito-identity"),
        )
        try:
            event = json.loads(body) if body else None
            result = handler(event, context)
            payload = json.dumps(result).encode()
        except Exception as error:
            document = report(error, request_id)
            api.request(
                "POST",
                f"/invocation/{request_id}/error",
                document,
                {"Lambda-Runtime-Function-Error-Type": "Unhandled", "Content-Type": "application/json"},
            )
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        api.request("POST", f"/invocation/{request_id}/response", payload, {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()
