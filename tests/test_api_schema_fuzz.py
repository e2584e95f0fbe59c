"""The OpenAPI schema is true: schemathesis sends what the schema allows (and what it does
not) to every operation of a live server, signed in as an admin. No answer may be a 5xx,
and each one's status, content type and body must be the ones the schema declares.

Bounded: ``MAX_EXAMPLES`` cases per operation in the fuzzing phase, plus the coverage
phase's boundary cases (about 1,800 requests); no stateful phase. Rerun a failure by hand
with the ``curl`` line the report prints (docs/development.md).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.domain import Category
from annotation.queue import assignments
from tests.factories import make_comparison

MAX_EXAMPLES = 8
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_token(admin_user) -> str:
    return Token.objects.create(user=admin_user).key


@pytest.fixture
def some_data(admin_user, settings, tmp_path) -> dict[str, int]:
    """Objects for schemathesis to reach past the 404s: an open and a draft batch with
    comparisons, and a task of the admin's. Nothing that would start training (no frozen
    batch, no reward model): Celery is eager here, so a launch would train in the server."""
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"
    draft = services.batch_create(name="draft", created_by=admin_user)
    make_comparison(draft)
    open_batch = services.batch_create(name="open", created_by=admin_user)
    for category in (Category.HELPFULNESS, Category.SAFETY, Category.SAFETY):
        make_comparison(open_batch, category=category)
    services.batch_transition(batch=open_batch, to="open", by=admin_user)
    task = assignments.assignment_next(annotator=admin_user)
    return {"draft": draft.pk, "assignment": task.pk}


def _config(ids: dict[str, int]) -> str:
    """schemathesis.toml: the operations that need an existing object get one (each
    operation's other inputs are still generated); every other id is generated."""
    fixed = [
        ("tasks_label", "assignment_id", ids["assignment"]),
        ("tasks_label_and_next", "assignment_id", ids["assignment"]),
        ("tasks_skip", "assignment_id", ids["assignment"]),
        ("batches_import", "batch_id", ids["draft"]),
    ]
    return "".join(
        f'[[operations]]\ninclude-operation-id = "{op}"\nparameters = {{ {name} = {value} }}\n\n'
        for op, name, value in fixed
    )


def test_no_operation_answers_a_server_error(live_server, admin_token, some_data, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(some_data))
    command = [
        str(cli if cli.exists() else shutil.which("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{live_server.url}/api/schema/",
        "--header",
        f"Authorization: Token {admin_token}",
        "--checks",
        # No 5xx; and every answer's status, content type and body are the documented ones.
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        # The test server (Django's threaded dev server) now and then drops a keep-alive
        # connection; a retry is a new connection, and a 5xx is never retried.
        "--request-retries",
        "2",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )
    report = out.stdout[-12000:] + out.stderr[-2000:]
    Path(os.environ.get("SCHEMATHESIS_REPORT", os.devnull)).write_text(out.stdout + out.stderr)
    assert out.returncode == 0, report
    assert "No issues found" in out.stdout or "passed" in out.stdout, report
