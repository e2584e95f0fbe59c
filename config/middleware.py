"""Site-wide middleware."""

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware


class LoginRequiredExceptApiMiddleware(LoginRequiredMiddleware):
    """Every page needs a logged-in user, except the login page and the REST API.

    The API authenticates by token inside DRF (after middleware runs), and answers
    401/403 itself rather than redirecting to an HTML login form.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/") or request.path_info.startswith(
            settings.STATIC_URL
        ):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
