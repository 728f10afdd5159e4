#!/usr/bin/env python3
"""Trims Railway's published GraphQL schema (the introspection result railwayapp/cli keeps as
src/gql/schema.json) to what the gate's tests send: the root fields of the CLI documents in
tests/fixtures/railway/cli, the fields their selections reach, and every input type, enum and
scalar their arguments need, whole. The result is still an introspection result (the same
shape, the same names and types), so the test upstream validates requests against Railway's own
definitions. Also writes the names of every Mutation field of the full schema.

Needs graphql-core (the test venv has it):
    python3 scripts/trim-railway-schema.py schema.json tests/fixtures/railway
"""

import json
import pathlib
import sys

from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    TypeInfo,
    Visitor,
    build_client_schema,
    parse,
    visit,
)
from graphql.utilities import TypeInfoVisitor


def named(type_):
    while isinstance(type_, (GraphQLNonNull, GraphQLList)):
        type_ = type_.of_type
    return type_


def main(schema_path, fixtures):
    full = json.loads(pathlib.Path(schema_path).read_text())
    data = full.get("data", full)["__schema"]
    schema = build_client_schema({"__schema": data})
    used_fields = {}  # type name -> set of field names
    needed_types = set()

    def need_input(type_):
        type_ = named(type_)
        if type_.name in needed_types:
            return
        needed_types.add(type_.name)
        if isinstance(type_, GraphQLInputObjectType):
            for field in type_.fields.values():
                need_input(field.type)

    class Collect(Visitor):
        def __init__(self, info):
            super().__init__()
            self.info = info

        def enter_field(self, node, *_):
            parent = self.info.get_parent_type()
            field = self.info.get_field_def()
            if parent is None or field is None:
                return
            used_fields.setdefault(parent.name, set()).add(node.name.value)
            needed_types.add(parent.name)
            needed_types.add(named(field.type).name)
            for argument in field.args.values():
                need_input(argument.type)

        def enter_variable_definition(self, node, *_):
            name = node.type
            while hasattr(name, "type"):
                name = name.type
            need_input(schema.get_type(name.name.value))

    for path in sorted((pathlib.Path(fixtures) / "cli").glob("*.graphql")):
        document = parse(path.read_text())
        info = TypeInfo(schema)
        visit(document, TypeInfoVisitor(info, Collect(info)))

    types = []
    for type_ in data["types"]:
        name = type_["name"]
        if name not in needed_types:
            continue
        kept = dict(type_)
        if type_["kind"] in ("OBJECT", "INTERFACE") and type_.get("fields") is not None:
            kept["fields"] = [field for field in type_["fields"] if field["name"] in used_fields.get(name, set())]
            kept["interfaces"] = []
        if type_["kind"] in ("INTERFACE", "UNION"):
            kept["possibleTypes"] = [t for t in (type_.get("possibleTypes") or []) if t["name"] in needed_types]
        types.append(kept)
    for root in ("queryType", "mutationType"):
        needed_types.add(data[root]["name"])
    trimmed = {
        "__schema": {
            "queryType": data["queryType"],
            "mutationType": data["mutationType"],
            "subscriptionType": None,
            "types": types,
            "directives": data["directives"],
        }
    }
    build_client_schema(trimmed)  # still a valid schema
    out = pathlib.Path(fixtures)
    (out / "schema.json").write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
    mutation = next(t for t in data["types"] if t["name"] == data["mutationType"]["name"])
    names = sorted(field["name"] for field in mutation["fields"])
    (out / "mutation-fields.txt").write_text("\n".join(names) + "\n")
    print(f"kept {len(types)} of {len(data['types'])} types; {len(names)} mutation fields listed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
