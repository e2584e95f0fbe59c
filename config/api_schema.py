"""The OpenAPI schema's error responses: every operation declares the statuses it can
answer with the one error body of config/api_errors.py.

drf-spectacular documents what a view declares; the errors that DRF and the exception
handler add on their own (401, 403, 404 for a path id, 400 for bad input, 405, 415, 429)
would otherwise be missing, or declared without a body.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer of the API (docs/api.md, 'Errors').",
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, in one sentence."},
        "errors": {
            "type": "object",
            "description": "Invalid input only: field (dotted for nested fields, "
            "non_field_errors for the request as a whole) → messages.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail"],
}
DEFAULT_DESCRIPTIONS = {
    "400": "Invalid input: `errors` names each field.",
    "401": "Not signed in: no or an invalid token or session.",
    "403": "Signed in without the role this needs.",
    "404": "No such object (or not one of the caller's), or no such page of a list.",
    "405": "Method not allowed.",
    "415": "Unsupported media type.",
    "429": "Too many requests: wait for Retry-After seconds.",
}
_BODY_METHODS = {"post", "put", "patch"}


def _wanted_statuses(path: str, method: str, operation: dict) -> list[str]:
    codes = ["401", "403", "405"]
    takes_input = method in _BODY_METHODS or any(
        p.get("in") == "query" for p in operation.get("parameters", [])
    )
    if takes_input:
        codes.append("400")
    if method in _BODY_METHODS:
        codes.append("415")
    if "{" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
        codes.append("404")  # an unknown id, or a page past the last ("Invalid page.")
    if not operation.get("security") or {} in operation.get("security", []):
        codes.remove("401")  # reachable without signing in (the token endpoint)
        codes.remove("403")
    return codes


def declare_error_responses(result: dict, generator, request, public) -> dict:
    """POSTPROCESSING_HOOK: the ``Error`` component, every operation's error statuses,
    and that body on each declared 4xx that has none."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in _wanted_statuses(path, method, operation):
                responses.setdefault(code, {"description": DEFAULT_DESCRIPTIONS[code]})
            for code, response in responses.items():
                if str(code).startswith("4") and "content" not in response:
                    response["content"] = {"application/json": {"schema": ref}}
    return result
