# A wasi:http/proxy handler in Python, built with componentize-py. Deployed by
# tests/compat/componentize-py.sh to prove such components run on nimbus unmodified.

import wit_world
from wit_world import exports
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
)
from componentize_py_types import Ok

COUNT = 0

class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        global COUNT
        COUNT += 1
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(f"Hello from Python! call {COUNT} path {request.path_with_query()}\n".encode())
        OutgoingBody.finish(body, None)
