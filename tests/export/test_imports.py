"""The export's web code imports neither torch nor transformers (nor pyarrow until a build)."""

import subprocess
import sys

from tests.conftest import REPO


def test_export_web_modules_import_no_ml_stack():
    code = (
        "import sys, django; django.setup();"
        "import annotation.export.views, annotation.export.api, annotation.export.services, annotation.export.tasks;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'pyarrow') if m in sys.modules);"
        "print(heavy); assert not heavy"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
