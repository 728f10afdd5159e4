#!/usr/bin/env python3
"""A local stand-in for Railway's GraphQL API, for the gate's tests: every request is parsed,
validated and has its variables coerced against Railway's published schema (graphql-core, the
reference implementation's port), must carry the real token, and is logged, one JSON line each.
Valid requests get a canned answer: `true` for Boolean fields, `null` otherwise.

    railway_upstream.py SCHEMA_JSON LOG_FILE PORT_FILE    (token in RAILWAY_UPSTREAM_TOKEN)
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graphql import GraphQLNonNull, build_client_schema, get_named_type, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode
from graphql.type import GraphQLBoolean

SCHEMA = build_client_schema(json.load(open(sys.argv[1])))
LOG = sys.argv[2]
TOKEN = os.environ["RAILWAY_UPSTREAM_TOKEN"]


def check(body):
    """Returns (errors, data) for one request body."""
    request = json.loads(body)
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        return ["not a GraphQL request"], None
    document = parse(request["query"])
    errors = [error.message for error in validate(SCHEMA, document)]
    if errors:
        return errors, None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    name = request.get("operationName")
    operation = next((o for o in operations if name is None or (o.name and o.name.value == name)), None)
    if operation is None:
        return ["no such operation"], None
    coerced = get_variable_values(SCHEMA, operation.variable_definitions or [], request.get("variables") or {})
    if isinstance(coerced, list):
        return [error.message for error in coerced], None
    root = SCHEMA.mutation_type if operation.operation.value == "mutation" else SCHEMA.query_type
    data = {}
    for selection in operation.selection_set.selections:
        field = root.fields[selection.name.value]
        key = selection.alias.value if selection.alias else selection.name.value
        data[key] = True if get_named_type(field.type) is GraphQLBoolean else None
    return [], data


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        authorized = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        try:
            errors, data = check(body)
        except Exception as error:  # a parse error is an answer, not a crash
            errors, data = [str(error)], None
        with open(LOG, "a") as log:
            log.write(json.dumps({"body": body.decode("utf-8", "replace"), "authorized": authorized,
                                  "valid": not errors, "errors": errors}) + "\n")
        if not authorized:
            status, answer = 401, {"errors": [{"message": "Not Authorized"}]}
        elif errors:
            status, answer = 400, {"errors": [{"message": m} for m in errors]}
        else:
            status, answer = 200, {"data": data}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[3] + ".tmp", "w") as port_file:
    port_file.write(str(server.server_address[1]))
os.rename(sys.argv[3] + ".tmp", sys.argv[3])
server.serve_forever()
