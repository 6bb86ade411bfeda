"""The REST contract as an OpenAPI 2.0 document (docs/openapi/uba.openapi.json).

`make openapi` writes it; `make proto-check` fails when it drifts from
proto/; the gateway serves it at /api/behavior-analytics/openapi.json.

    python -m uba.gateway.openapi --descriptor envoy/uba_descriptor.pb --out FILE
    python -m uba.gateway.openapi --descriptor DESCRIPTOR --check FILE

Two steps:

1. grpc-gateway's protoc-gen-swagger (Debian's golang-grpc-gateway) reads
   the services' google.api.http annotations and the proto comments and
   writes the paths, parameters and message schemas. It is run here as a
   protoc plugin on the descriptor set `make proto` builds, not through
   protoc: protoc refuses to hand files with proto3 `optional` fields to a
   plugin that does not declare it understands them, and that version does
   not declare it (it reads such a field as the one member of a oneof,
   which is what its JSON is).

2. `complete()` adds what the gateway really does and the generator cannot
   know, each step in its own function below: the trailing-slash spelling
   of every path (gateway.lua), the google.rpc.Status error answers with
   the statuses the gateway gives, the bearer key (server/uba/api/auth.py),
   the alert stream's server-sent events and the log download's file
   types, the JSON form of google.protobuf.Any, request bodies without the
   fields the path already carries, and a title. Nothing depends on the
   time or the machine: the same descriptor gives the same bytes.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from uba.config import MAX_BATCH_SIZE
from uba.domain import incidents, investigation, notifications, paging
from uba.domain.analysis import MAX_SUPPRESSION
from uba.domain.attack import TACTICS
from uba.domain.dashboard import MAX_WINDOW
from uba.domain.erasure import PSEUDONYM_PREFIX
from uba.domain.logs import EXPORT_FORMATS
from uba.domain.validation import MAX_LENGTHS
from uba.gateway.config import SOURCE_DIR

CHECKOUT = SOURCE_DIR.parent
OPENAPI_JSON = CHECKOUT / "docs" / "openapi" / "uba.openapi.json"
API = "/api/behavior-analytics"
# The generator, as Debian's golang-grpc-gateway installs it.
PLUGIN = "protoc-gen-swagger"
PLUGIN_OPTIONS = "allow_merge=true,merge_file_name=uba,json_names_for_fields=true"
SERVICE_PREFIX = "uba/"

STATUS = "rpcStatus"
ANY = "protobufAny"
SECURITY = "bearer"
SLASH_TAG = "Trailing-slash spellings"

# What each HTTP status of an error answer means here (the transcoder's
# gRPC-to-HTTP mapping and Envoy's own replies, see envoy.yaml.in).
ERRORS = {
    "400": "INVALID_ARGUMENT or FAILED_PRECONDITION: a malformed or unknown query parameter, "
    "a bad body or field value (with google.rpc.BadRequest field violations), or a workflow "
    "step the resource's state does not allow.",
    "401": "UNAUTHENTICATED: no API key, or an unknown, expired or revoked one.",
    "403": "PERMISSION_DENIED: the key lacks the method's scope.",
    "404": "NOT_FOUND: no such resource.",
    "413": "INVALID_ARGUMENT: the request body is larger than the gateway's limit (16 MiB).",
    "429": "RESOURCE_EXHAUSTED: the key's request rate or stream count, or the client "
    "address's failed-authentication budget, is spent (with google.rpc.RetryInfo).",
    "500": "INTERNAL: an unexpected server error; the message carries a trace id.",
    "501": "UNIMPLEMENTED: this server was built without the feature.",
    "503": "UNAVAILABLE: the server is draining, its database is unreachable, or no "
    "server answers the gateway.",
    "504": "DEADLINE_EXCEEDED: the call took longer than the gateway's REST timeout.",
}
# Statuses every operation may answer; the others are added where they apply.
COMMON_ERRORS = ("400", "401", "403", "429", "500", "503", "504")
# Methods whose server part is optional (servicer.py raises UNIMPLEMENTED
# without it; TrainModel needs the enhanced packages).
OPTIONAL_FEATURE = {
    "TrainModel",
    "ListIncidents",
    "GetIncident",
    "AcknowledgeIncident",
    "ResolveIncident",
    "ListAuditEvents",
}
# Methods that name a resource outside the path (a notify-file destination)
# and answer NOT_FOUND when it does not exist.
NAMED_RESOURCE = {"ListNotifications", "RetryNotifications", "SendTestNotification"}

# The range of google.protobuf.Duration and of int64, in their JSON form.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_INT64 = (1 << 63) - 1
# No text the server stores holds a NUL, and every method but ingest refuses
# one in a filter, an id or a note (uba.api.decoding).
NUL_FREE = "^[^\\u0000]*$"

STREAM_OPERATION = "StreamAlerts"
DOWNLOAD_OPERATION = "ExportLogs"
DOWNLOAD_TYPES = ["text/csv", "application/json", "application/x-ndjson"]


class GeneratorMissing(RuntimeError):
    """protoc-gen-swagger is not installed."""


def find_plugin() -> str:
    path = shutil.which(PLUGIN)
    if path is None:
        raise GeneratorMissing(
            f"{PLUGIN} not found: install Debian's golang-grpc-gateway package "
            "(apt-get install golang-grpc-gateway)"
        )
    return path


def run_generator(descriptor_set: bytes, plugin: str | None = None) -> dict[str, Any]:
    """protoc-gen-swagger's document for the uba/ files of a descriptor set
    (built with --include_imports and --include_source_info)."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(descriptor_set)
    request = plugin_pb2.CodeGeneratorRequest(parameter=PLUGIN_OPTIONS)
    for file in files.file:
        request.proto_file.add().CopyFrom(file)
        if file.name.startswith(SERVICE_PREFIX) and file.service:
            request.file_to_generate.append(file.name)
    if not request.file_to_generate:
        raise ValueError("the descriptor set holds no uba service")
    done = subprocess.run(
        [plugin or find_plugin()],
        input=request.SerializeToString(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{PLUGIN} failed: {done.stderr.decode(errors='replace')}")
    response = plugin_pb2.CodeGeneratorResponse()
    response.ParseFromString(done.stdout)
    if response.error:
        raise RuntimeError(f"{PLUGIN}: {response.error}")
    if len(response.file) != 1:
        raise RuntimeError(f"{PLUGIN} wrote {len(response.file)} files, expected one")
    document: dict[str, Any] = json.loads(response.file[0].content)
    return document


def _json_names(descriptor_set: bytes) -> dict[str, str]:
    """field name -> JSON name, over every message of the uba files."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(descriptor_set)
    names: dict[str, str] = {}

    def walk(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            names[field.name] = field.json_name or field.name
        for nested in message.nested_type:
            walk(nested)

    for file in files.file:
        if file.name.startswith(SERVICE_PREFIX):
            for message in file.message_type:
                walk(message)
    return names


def _operations(document: dict[str, Any]):
    for path in sorted(document["paths"]):
        for method in sorted(document["paths"][path]):
            yield path, method, document["paths"][path][method]


def set_info(document: dict[str, Any]) -> None:
    """A title instead of the first proto file's name; no fixed schemes (a
    client uses those it fetched the document with: https behind TLS)."""
    document["info"] = {
        "title": "uba REST API",
        "version": "v1",
        "description": (
            "The REST form of the uba.v1.BehaviorAnalyticsService gRPC service, as the "
            "bundled Envoy gateway transcodes it. Generated from proto/uba/v1 by "
            "`make openapi`; do not edit.\n\n"
            "Every call needs an API key: `Authorization: Bearer <key>`. Every path also "
            "answers with a trailing slash. Errors are a JSON google.rpc.Status. Field "
            "names are lowerCamelCase in bodies and answers; query parameters take "
            "snake_case or lowerCamelCase; enum values are their names; 64-bit integers "
            "are strings; timestamps are RFC 3339 (proto3 JSON). Requests may also use "
            "proto3 JSON's other spellings: null for a field's default, enum numbers, "
            "numbers as strings and 64-bit integers as numbers. A method a path does not "
            "take is answered 405 with an Allow header."
        ),
    }
    document.pop("schemes", None)


def add_security(document: dict[str, Any]) -> None:
    """OpenAPI 2.0 has no bearer scheme: the key is an Authorization header
    whose value is `Bearer <key>` (server/uba/api/auth.py)."""
    document["securityDefinitions"] = {
        SECURITY: {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Bearer <key>`: an API key (`uba keys create`; on first start `uba serve` "
                "writes an admin key to DATA_DIR/admin.key). Scopes: ingest, read, admin."
            ),
        }
    }
    document["security"] = [{SECURITY: []}]


def fix_any(document: dict[str, Any]) -> None:
    """google.protobuf.Any in proto3 JSON is an object with `@type` and the
    message's own fields (error details), not {typeUrl, value}."""
    document["definitions"][ANY] = {
        "type": "object",
        "properties": {
            "@type": {
                "type": "string",
                "description": "The detail's type, e.g. type.googleapis.com/google.rpc.BadRequest.",
            }
        },
        "additionalProperties": True,
        "description": "An error detail (google.protobuf.Any in proto3 JSON): `@type` and "
        "the fields of that message.",
    }


def add_errors(document: dict[str, Any]) -> None:
    """The google.rpc.Status body of every error answer, with the statuses
    each operation can get."""
    document["definitions"][STATUS] = {
        "type": "object",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "The google.rpc.Code (3 INVALID_ARGUMENT, 16 UNAUTHENTICATED...).",
            },
            "message": {"type": "string", "description": "What went wrong, for a person."},
            "details": {
                "type": "array",
                "items": {"$ref": f"#/definitions/{ANY}"},
                "description": "google.rpc.BadRequest field violations, google.rpc.RetryInfo.",
            },
        },
        "description": "An error answer (google.rpc.Status).",
    }
    for path, method, operation in _operations(document):
        codes = set(COMMON_ERRORS)
        if "{" in path or operation["operationId"] in NAMED_RESOURCE:
            codes.add("404")
        if method == "post":
            codes.add("413")
        if operation["operationId"] in OPTIONAL_FEATURE:
            codes.add("501")
        for code in sorted(codes):
            operation["responses"][code] = {
                "description": ERRORS[code],
                "schema": {"$ref": f"#/definitions/{STATUS}"},
            }


def strip_path_fields_from_bodies(document: dict[str, Any], json_names: dict[str, str]) -> None:
    """A `body: "*"` method takes its path parameters from the path: its body
    schema is the request message without them (`<Operation>Body`)."""
    definitions = document["definitions"]
    for _path, _method, operation in _operations(document):
        parameters = operation.get("parameters", [])
        in_path = [json_names.get(p["name"], p["name"]) for p in parameters if p["in"] == "path"]
        for parameter in parameters:
            if parameter["in"] != "body" or not in_path:
                continue
            ref = parameter["schema"].get("$ref", "")
            source = definitions.get(ref.rsplit("/", 1)[-1])
            if source is None or not any(n in source.get("properties", {}) for n in in_path):
                continue
            body = copy.deepcopy(source)
            for name in in_path:
                body["properties"].pop(name, None)
            name = f"{operation['operationId']}Body"
            definitions[name] = body
            parameter["schema"] = {"$ref": f"#/definitions/{name}"}


def digits_at_most(limit: int) -> str:
    """A regular expression (unanchored) of the decimal integers 0..limit,
    without leading zeros."""
    text = str(limit)
    alternatives = ["0"] if limit >= 0 else []
    for length in range(1, len(text)):
        alternatives.append("[1-9]" + _repeat_digit(length - 1))
    for i, digit in enumerate(text):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            below = f"[{low}-{int(digit) - 1}]" if int(digit) - 1 > low else str(low)
            alternatives.append(text[:i] + below + _repeat_digit(len(text) - i - 1))
    if limit > 0:
        alternatives.append(text)
    return "(" + "|".join(dict.fromkeys(alternatives)) + ")"


def _repeat_digit(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def duration_pattern(max_seconds: int, negative: bool = False) -> str:
    """A google.protobuf.Duration in JSON ("1.5s") of at most `max_seconds`
    (and, when `negative`, at least minus that)."""
    fraction = "(\\.[0-9]{1,9})?"
    below = digits_at_most(max_seconds - 1)
    sign = "-?" if negative else ""
    return f"^{sign}({below}{fraction}|{max_seconds}(\\.0{{1,9}})?)s$"


def int64_pattern(negative: bool = True) -> str:
    """A 64-bit integer in its JSON form, a decimal string."""
    return "^" + ("-?" if negative else "") + digits_at_most(MAX_INT64) + "$"


# Query and path parameters: what the server refuses that OpenAPI 2.0 can say.
PAGE_SIZE = {"minimum": 0, "maximum": paging.MAX_PAGE_SIZE}
PARAMETER_RULES: dict[str, dict[str, Any]] = {
    "page_size": PAGE_SIZE,
    "window": {"pattern": duration_pattern(int(MAX_WINDOW.total_seconds()))},
    "format": {"enum": ["", *EXPORT_FORMATS]},
    "tactic": {
        "enum": [
            "",
            *TACTICS,
            *(name.lower().replace(" ", "-") for name in TACTICS.values()),
        ]
    },
    "after_seq": {"pattern": int64_pattern(negative=False)},
}
# Path parameters of one operation that follow a stricter rule: ForgetUser
# takes the user ids ingest takes (no control or line separator character;
# the format characters, Unicode category Cf, differ between Unicode
# versions and are left to the field's description), and no pseudonym.
IDENTIFIER = {
    "minLength": 1,
    "maxLength": MAX_LENGTHS["user_id"],
    "pattern": f"^(?!{PSEUDONYM_PREFIX})[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$",
}
OPERATION_PARAMETER_RULES = {("ForgetUser", "user_id"): IDENTIFIER}

# Request bodies: definition -> property -> constraints ("required": True
# lists the property as required; "enum_without" drops enum values).
NOTE = {"maxLength": investigation.MAX_NOTE, "pattern": NUL_FREE}
INCIDENT_NOTE = {"maxLength": incidents.MAX_NOTE, "pattern": NUL_FREE}
RESOLUTION = {"required": True, "enum_without": "RESOLUTION_UNSPECIFIED"}
DESTINATION = {"required": True, "minLength": 1, "pattern": NUL_FREE}
BODY_RULES: dict[str, dict[str, dict[str, Any]]] = {
    # Only what the transcoder checks: RecordActivities reports an invalid
    # event in its answer (200), so the event rules stay in the descriptions.
    "v1ActivityEvent": {
        "sessionDuration": {"pattern": duration_pattern(MAX_DURATION_SECONDS, negative=True)},
        "bytesTransferred": {"pattern": int64_pattern()},
        "receivedAt": {"readOnly": True},
    },
    "v1RecordActivitiesRequest": {"events": {"maxItems": MAX_BATCH_SIZE}},
    "AcknowledgeAlertBody": {"note": NOTE},
    "ResolveAlertBody": {
        "resolution": RESOLUTION,
        "note": NOTE,
        "suppressFor": {"pattern": duration_pattern(int(MAX_SUPPRESSION.total_seconds()))},
    },
    "AcknowledgeIncidentBody": {"note": INCIDENT_NOTE},
    "ResolveIncidentBody": {"resolution": RESOLUTION, "note": INCIDENT_NOTE},
    "v1BackfillRequest": {"startTime": {"required": True}},
    "v1RetryNotificationsRequest": {
        "destination": DESTINATION,
        "messageIds": {"items": {"pattern": NUL_FREE}},
    },
    "v1SendTestNotificationRequest": {
        "destination": DESTINATION,
        "text": {"maxLength": notifications.MAX_TEST_TEXT, "pattern": NUL_FREE},
    },
}


def constrain_requests(document: dict[str, Any]) -> None:
    """The server's rules on requests that OpenAPI 2.0 can state, which the
    generator cannot know (it reads no field_behavior and no validation):
    page sizes, duration and 64-bit integer syntax and ranges, the export
    formats and ATT&CK tactics, required fields, lengths, no NUL in text.
    What it cannot state (time windows, the clock, addresses, time zones,
    Unicode categories, a resource's state) stays in the descriptions.
    A body is required only when one of its fields is: without one the
    transcoder reads an empty message."""
    definitions = document["definitions"]
    for _path, _method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            name = parameter["name"]
            if parameter["in"] == "body":
                ref = parameter["schema"].get("$ref", "").rsplit("/", 1)[-1]
                operation_id = operation["operationId"]
                if ref in (f"v1{operation_id}Request", f"{operation_id}Body"):  # body: "*"
                    parameter["required"] = any(
                        rule.get("required") for rule in BODY_RULES.get(ref, {}).values()
                    )
                continue
            rules = OPERATION_PARAMETER_RULES.get((operation["operationId"], name))
            if rules is None:
                rules = PARAMETER_RULES.get(name)
            if rules is None and parameter.get("type") == "string" and "enum" not in parameter:
                if parameter.get("format") is None:
                    rules = {"pattern": NUL_FREE}
            for key, value in (rules or {}).items():
                parameter[key] = copy.deepcopy(value)
                if key == "enum":
                    parameter.pop("default", None)
    for name, properties in BODY_RULES.items():
        definition = definitions[name]
        required = []
        for field, rules in properties.items():
            schema = definition["properties"][field]
            for key, value in rules.items():
                if key == "required":
                    required.append(field)
                elif key == "enum_without":
                    enum = definitions[schema.pop("$ref").rsplit("/", 1)[-1]]
                    schema.update(type="string", enum=[v for v in enum["enum"] if v != value])
                elif key == "items":
                    schema["items"].update(value)
                else:
                    schema[key] = copy.deepcopy(value)
        if required:
            definition["required"] = required


def describe_stream(document: dict[str, Any]) -> None:
    """The alert stream is server-sent events (the transcoder's SSE framing,
    on that route only): `data: <StreamAlertsResponse JSON>` lines."""
    for _path, _method, operation in _operations(document):
        if operation["operationId"] != STREAM_OPERATION:
            continue
        operation["produces"] = ["text/event-stream"]
        operation["responses"]["200"] = {
            "description": (
                "Server-sent events that never end by themselves: one `data:` line per "
                "message, each a v1StreamAlertsResponse in JSON (an alert change, an "
                "incident change or a heartbeat). There are no `id:` lines: every message "
                "carries its `seq`; reconnect with `after_seq` (or Last-Event-ID) to resume. "
                "An error before the first message is an ordinary JSON google.rpc.Status."
            ),
            "schema": {"type": "string"},
        }


def describe_download(document: dict[str, Any]) -> None:
    """The log export is a file: CSV, a JSON array or NDJSON, as `format` says
    (the server chooses the Content-Type; gateway.lua names the file)."""
    for _path, _method, operation in _operations(document):
        if operation["operationId"] != DOWNLOAD_OPERATION:
            continue
        operation["produces"] = list(DOWNLOAD_TYPES)
        operation["responses"]["200"] = {
            "description": (
                "The selected events, oldest first: CSV with a header row (format=csv, the "
                "default), one JSON array (json) or one JSON object a line (ndjson), sent "
                "as an attachment (Content-Disposition: uba-logs-<UTC time>.<extension>)."
            ),
            "schema": {"type": "file"},
            "headers": {
                "Content-Disposition": {
                    "type": "string",
                    "description": 'attachment; filename="uba-logs-YYYYMMDDTHHMMSSZ.csv"',
                }
            },
        }


def add_trailing_slash_paths(document: dict[str, Any]) -> None:
    """gateway.lua strips one trailing slash from /api/ paths, so each path
    answers in both spellings (the README documents the one with the slash,
    which an HTTP rule cannot express)."""
    paths = document["paths"]
    for path in sorted(paths):
        if path.endswith("/"):
            continue
        twin: dict[str, Any] = {}
        for method, operation in sorted(paths[path].items()):
            copied = copy.deepcopy(operation)
            copied["operationId"] = f"{operation['operationId']}_slash"
            copied["tags"] = [SLASH_TAG]
            copied["summary"] = f"{operation.get('summary', '')} (same as {path})".strip()
            twin[method] = copied
        paths[path + "/"] = twin
    document["paths"] = {p: paths[p] for p in sorted(paths)}
    document["tags"] = [
        {"name": "BehaviorAnalyticsService", "description": "uba.v1.BehaviorAnalyticsService"},
        {"name": SLASH_TAG, "description": "The same operations, spelt with a trailing slash."},
    ]


def complete(document: dict[str, Any], json_names: dict[str, str]) -> dict[str, Any]:
    """What the gateway really does, added to the generator's document (see
    the module docstring). The trailing-slash copies come last, so that they
    carry every other addition."""
    set_info(document)
    add_security(document)
    fix_any(document)
    add_errors(document)
    strip_path_fields_from_bodies(document, json_names)
    constrain_requests(document)
    describe_stream(document)
    describe_download(document)
    add_trailing_slash_paths(document)
    document["definitions"] = {
        k: document["definitions"][k] for k in sorted(document["definitions"])
    }
    return document


def generate(descriptor_set: bytes, plugin: str | None = None) -> str:
    """The committed document's text for a descriptor set."""
    document = complete(run_generator(descriptor_set, plugin), _json_names(descriptor_set))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uba.gateway.openapi", description=__doc__)
    parser.add_argument(
        "--descriptor", type=Path, required=True, help="descriptor set (make proto)"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write the document here")
    target.add_argument("--check", type=Path, help="fail when this file differs")
    args = parser.parse_args(argv)
    try:
        text = generate(args.descriptor.read_bytes())
    except GeneratorMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return 0
    if not args.check.is_file() or args.check.read_text() != text:
        print(f"drift: {args.check} differs from proto/; run 'make openapi'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
