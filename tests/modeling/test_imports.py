"""Importing the web app must not import torch or transformers."""

import subprocess
import sys

from tests.conftest import REPO

CODE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
import config.urls, annotation.views, modeling.views, modeling.api, modeling.services, modeling.tasks, modeling.admin
import modeling.selectors, modeling.ml.recipes, modeling.ml.evaluation, modeling.plots, modeling.ml.training.config
from django.urls import reverse
reverse("modeling:list")
heavy = sorted(m for m in ("torch", "transformers", "accelerate", "sentencepiece") if m in sys.modules)
print("HEAVY:", heavy)
"""


def test_web_app_imports_without_torch():
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout, out.stdout
