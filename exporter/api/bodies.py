"""Reading a request's JSON body into a schema Struct, with every failure a clear 4xx.

Size is capped by Flask's MAX_CONTENT_LENGTH (413 before the body is read); a body that is
not declared JSON is a 415; malformed JSON, schema violations and JSON nested deeper than
MAX_NESTING levels are a 400 naming the field (docs/contract.md §8).
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar, overload

import msgspec
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from exporter.api.errors import ApiError, error_response
from exporter.tracking.decode import MAX_LISTED_ERRORS, MAX_NESTING, deeper_than

T = TypeVar("T")
BODY_FIELD = "body"  # the `field` of an error about the body as a whole
NUL = "\x00"
FREE_FORM = frozenset({"payload", "result"})

_AT_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `(\w+)`")
_UNKNOWN = re.compile(r"unknown field `(\w+)`")


class ListedErrors(ApiError):
    """A 400 about items: it lists at most `MAX_LISTED_ERRORS` of their errors, and says in
    `errorCount` how many there were (a push of 4 million bad items would otherwise answer
    hundreds of megabytes)."""

    def __init__(
        self,
        message: str,
        errors: list[dict[str, Any]],
        error_count: int,
        *,
        max_listed: int = MAX_LISTED_ERRORS,
    ) -> None:
        super().__init__(400, message, errors[:max_listed])
        self.error_count = error_count


def nesting_error(field: str, max_nesting: int = MAX_NESTING) -> ApiError:
    message = f"JSON nested more than {max_nesting} levels deep"
    return ApiError(400, f"the request body is {message}", [_error(field, message)])


def init_app(app: Flask) -> None:
    """A body over MAX_CONTENT_LENGTH answers 413 naming the body and the cap."""

    @app.errorhandler(ListedErrors)
    def listed_errors(error: ListedErrors):
        response = jsonify(
            {"error": error.message, "errors": error.errors, "errorCount": error.error_count}
        )
        response.status_code = error.status
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exception: RequestEntityTooLarge):
        cap = current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"the request body is larger than {cap} bytes"
        return error_response(413, message, [_error(BODY_FIELD, "too large")])

    @app.before_request
    def refuse_nul() -> None:
        """A NUL in the path or the query is a 400: PostgreSQL text cannot hold one, so it
        would otherwise surface as a store failure."""
        values = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
        for name, value in values:
            if isinstance(value, str) and NUL in value:
                field = "id" if name == "job_id" else name
                raise ApiError(
                    400,
                    f"{field} contains a NUL character",
                    [_error(field, "contains a NUL character")],
                )


def is_json_content_type() -> bool:
    mimetype = request.mimetype
    return mimetype == "application/json" or mimetype.endswith("+json")


@overload
def raw_json_body(
    *, required: Literal[True] = True, max_nesting: int | None = MAX_NESTING
) -> bytes: ...
@overload
def raw_json_body(*, required: bool, max_nesting: int | None = MAX_NESTING) -> bytes | None: ...
def raw_json_body(*, required: bool = True, max_nesting: int | None = MAX_NESTING) -> bytes | None:
    """The body, checked to be present, declared JSON and nested at most `max_nesting`
    deep (None: the caller checks, knowing its schema); None when optional and empty."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if not required:
            return None
        raise ApiError(400, "a JSON request body is required", [_error(BODY_FIELD, "empty")])
    if not is_json_content_type():
        raise ApiError(
            415,
            f"the body must be sent as application/json, not {request.mimetype or 'untyped'}",
            [_error("Content-Type", "expected application/json")],
        )
    if max_nesting is not None and deeper_than(raw, max_nesting):
        raise nesting_error(BODY_FIELD, max_nesting)
    return raw


def read_json(model: type[T], *, max_nesting: int = MAX_NESTING) -> T:
    """Decode and validate the body as `model`; 400 naming the field when it does not fit,
    or naming the free-form field (payload, result) that nests deeper than `max_nesting`.
    A schema with neither free-form nor unknown fields bounds the depth itself, so only a
    body that decoded into one that has them is scanned, and only when it holds more
    brackets than `max_nesting`."""
    raw = raw_json_body(max_nesting=None)
    try:
        body = msgspec.json.decode(raw, type=model)
    except RecursionError as error:  # msgspec's own guard, near 1,000 levels
        raise nesting_error(_nesting_field(model), max_nesting) from error
    except msgspec.ValidationError as error:
        raise ApiError(
            400, "the request body is invalid", [_error(field_of(error), message_of(error))]
        ) from error
    except msgspec.DecodeError as error:
        raise ApiError(
            400, "the request body is not valid JSON", [_error(BODY_FIELD, str(error))]
        ) from error
    if _may_nest(model) and deeper_than(raw, max_nesting):
        raise nesting_error(_nesting_field(model), max_nesting)
    if (field := _field_with_nul(body)) is not None:
        raise ApiError(
            400, "the request body is invalid", [_error(field, "contains a NUL character")]
        )
    return body


def _field_with_nul(body: object) -> str | None:
    """The first text field (or list of them) holding a NUL; free-form JSON (payload and
    result) is stored as escaped JSON text and may hold anything."""
    if not isinstance(body, msgspec.Struct):
        return None
    for field in msgspec.structs.fields(body):
        if field.name in FREE_FORM:
            continue
        value = getattr(body, field.name)
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and NUL in text for text in texts):
            return field.encode_name
    return None


def _may_nest(model: type) -> bool:
    """Whether a body that decodes as `model` may nest deeper than its schema: through a
    free-form field, or a field it ignores."""
    if not (isinstance(model, type) and issubclass(model, msgspec.Struct)):
        return True
    config = model.__struct_config__
    names = {field.encode_name for field in msgspec.structs.fields(model)}
    return not config.forbid_unknown_fields or bool(names & FREE_FORM)


def _nesting_field(model: type) -> str:
    """Where deep nesting can only be: the model's one free-form field, else the body."""
    if isinstance(model, type) and issubclass(model, msgspec.Struct):
        free = [f.encode_name for f in msgspec.structs.fields(model) if f.name in FREE_FORM]
        if len(free) == 1:
            return free[0]
    return BODY_FIELD


def field_of(error: msgspec.ValidationError) -> str:
    """The field a validation error is about, as a path (`types[0]`), or `body`."""
    text = str(error)
    for pattern in (_MISSING, _UNKNOWN, _AT_PATH):
        match = pattern.search(text)
        if match and match.group(1):
            return match.group(1)
    return BODY_FIELD


def message_of(error: msgspec.ValidationError) -> str:
    return str(error).split(" - at ")[0]


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}
