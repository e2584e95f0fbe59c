"""Production settings pass Django's deployment checks, drf-spectacular's schema check included."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "x7#Lq2!vR9@mZ4$kT8^wN3&pJ6*bH1(eY5)cU0_sF-gD+aK=oI;lE:zX<rV>nM?",
    "DJANGO_ALLOWED_HOSTS": "pairwise.example.org",
}
SHOW = (
    "from django.conf import settings as s; import json; print(json.dumps([s.SECURE_SSL_REDIRECT,"
    " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS]))"
)


def _switches(env: dict) -> list:
    out = _manage("shell", "-c", SHOW, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # after the shell's own banner


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_deploy_is_clean_under_production_settings():
    out = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_https_switches_are_on_in_production_off_in_development_and_overridable():
    assert _switches(PRODUCTION) == [True, True, True, 31_536_000]
    assert _switches({}) == [False, False, False, 0]
    assert _switches({**PRODUCTION, "DJANGO_SECURE_SSL_REDIRECT": "false"})[0] is False
