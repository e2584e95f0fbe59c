"""Signing in, rate-limited: the login page and the API's token endpoint.

Both count attempts per username and client address (``REMOTE_ADDR``: behind a proxy,
have it set the client's address) in the default cache, and refuse with 429 past
``PAIRWISE_LOGIN_RATE`` / ``PAIRWISE_AUTH_TOKEN_RATE`` (``N/s``, ``N/m``, ``N/h``, ``N/d``).
With several web processes the cache must be shared (``PAIRWISE_CACHE_URL=redis://...``),
or each process counts on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import ScopedRateThrottle

TOO_MANY = "Too many sign-in attempts for this username from this address."


def _username_and_address(request: HttpRequest, username: str) -> str:
    # Hashed: a cache key must be short and plain ASCII, whatever the username holds.
    key = f"{username.strip().lower()}|{request.META.get('REMOTE_ADDR', '')}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _login_key(group: str, request: HttpRequest) -> str:
    return _username_and_address(request, request.POST.get("username", ""))


def _login_rate(group: str, request: HttpRequest) -> str:
    return settings.PAIRWISE_LOGIN_RATE


@method_decorator(
    ratelimit(group="login", key=_login_key, rate=_login_rate, method="POST", block=False),
    name="post",
)
class RateLimitedLoginView(auth_views.LoginView):
    """Django's login page; past the rate it answers 429 with the form and a message,
    without checking the password."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if getattr(request, "limited", False):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, f"{TOO_MANY} Wait a minute and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)


class UsernameAddressThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, counted per username and client address (not per address
    alone: one office behind one address should not lock each other out)."""

    def get_cache_key(self, request, view):
        data = request.data
        username = data.get("username", "") if isinstance(data, Mapping) else ""
        ident = _username_and_address(request, str(username))
        return self.cache_format % {"scope": self.scope, "ident": ident}


class TokenObtainApi(ObtainAuthToken):
    """POST username and password → ``{"token": ...}``; rate-limited (scope ``auth-token``)."""

    throttle_classes = [UsernameAddressThrottle]
    throttle_scope = "auth-token"

    @extend_schema(
        operation_id="auth_token",
        summary="A token for a username and password (rate-limited)",
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("Token", fields={"token": serializers.CharField()}),
            400: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(description=f"{TOO_MANY} Wait for Retry-After seconds."),
        },
        auth=[],
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def throttled(self, request, wait):
        raise exceptions.Throttled(wait, detail=TOO_MANY)
