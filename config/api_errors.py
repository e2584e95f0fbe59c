"""One error body for the whole REST API, and JSON instead of HTML pages under /api/.

Every 4xx/5xx the API answers has the same shape::

    {"detail": "strength: \\"a bit\\" is not a valid choice.",
     "errors": {"strength": ["\\"a bit\\" is not a valid choice."]}}

- ``detail`` (always): one human-readable sentence; for invalid input it names the
  field(s) and says what is wrong.
- ``errors`` (invalid input, 400 only): field → list of messages. Nested fields are joined
  with dots (``items.0.dialogue``); errors about the request as a whole are under
  ``non_field_errors``.

An endpoint may add keys of its own beside these two (the import's ``problems``, one per
bad line), never replace them. Services raise Django's ``ValidationError`` (400),
``PermissionDenied`` (403) or ``Http404``/``ObjectDoesNotExist`` (404); views do not catch
them, :func:`exception_handler` maps them here, once.

The ``api_*`` views are Django's ``handler400/403/404/500`` (config/urls.py): a path under
/api/ that matches no route, or a crash outside DRF's own handling, answers the same JSON
body instead of the site's HTML pages.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404
from django.views import defaults
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

API_PREFIX = "/api/"


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"field.sub.0": ["message", ...]}``."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or api_settings.NON_FIELD_ERRORS_KEY: [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix or api_settings.NON_FIELD_ERRORS_KEY: [str(detail)]}


def errors_summary(errors: dict[str, list[str]]) -> str:
    """One sentence naming each field with its first message."""
    parts = [
        messages[0] if field == api_settings.NON_FIELD_ERRORS_KEY else f"{field}: {messages[0]}"
        for field, messages in errors.items()
        if messages
    ]
    return "; ".join(parts) or "Invalid input."


def error_body(detail: Any) -> dict[str, Any]:
    """The API's error body for a DRF exception's ``detail``."""
    if isinstance(detail, dict | list):
        errors = _flatten(detail)
        return {"detail": errors_summary(errors), "errors": errors}
    return {"detail": str(detail)}


def _as_drf(exc: Exception) -> Exception:
    """The services' Django exceptions as DRF's (DRF itself maps only Http404 and
    PermissionDenied, and neither ValidationError nor ObjectDoesNotExist)."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, ObjectDoesNotExist):  # its message names the model's query: say less
        return exceptions.NotFound()
    return exc


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """REST_FRAMEWORK's EXCEPTION_HANDLER: DRF's handler (headers such as Retry-After and
    WWW-Authenticate included), with every body in the one shape. Anything else is a bug:
    it propagates and becomes :func:`api_server_error`."""
    exc = _as_drf(exc)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = error_body(exc.detail)
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def api_bad_request(request: HttpRequest, exception: Exception, **kwargs) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception, **kwargs)


def api_permission_denied(request: HttpRequest, exception: Exception, **kwargs) -> HttpResponse:
    if _is_api(request):
        message = str(exception) or "You do not have permission to perform this action."
        return JsonResponse({"detail": message}, status=403)
    return defaults.permission_denied(request, exception, **kwargs)


def api_page_not_found(request: HttpRequest, exception: Exception, **kwargs) -> HttpResponse:
    if _is_api(request):
        # Not str(exception): for an unmatched URL it lists the URL patterns tried.
        if isinstance(exception, Resolver404):
            return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception, **kwargs)


def api_server_error(request: HttpRequest, **kwargs) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(
            {"detail": "Server error: the administrators can find the details in the log."},
            status=500,
        )
    return defaults.server_error(request, **kwargs)
