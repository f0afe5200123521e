"""nimbus's runtime interface client for Python.

Loads the handler named by _HANDLER ("module.function") from LAMBDA_TASK_ROOT and serves
invocations over the AWS Lambda Runtime API at AWS_LAMBDA_RUNTIME_API, as Lambda's Python
runtime does. Standard library only.
"""

import http.client
import importlib
import json
import os
import sys
import time
import traceback

BASE = "/2018-06-01/runtime"


class RuntimeApi:
    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port)
            try:
                self.connection.request(method, BASE + path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.headers, response.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise


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
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


def report(error, request_id=None):
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
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        trace = headers.get("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        context = LambdaContext(
            request_id,
            int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            optional_json(headers, "Lambda-Runtime-Client-Context"),
            optional_json(headers, "Lambda-Runtime-Cognito-Identity"),
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
