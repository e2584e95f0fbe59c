"""The site's URLs plus the bare baseline view (benchmark servers only, see bench.settings)."""

from django.urls import path

from bench.bare_view import bare_read_insert
from config.urls import urlpatterns as site_urlpatterns

# Under /api/ so it goes through exactly the middleware the API does.
urlpatterns = [path("api/bench/bare/", bare_read_insert, name="bench-bare"), *site_urlpatterns]
