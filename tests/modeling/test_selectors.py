"""Reads of the modeling app: which base model is current."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from modeling.models import ModelKind, ModelVersion
from modeling.selectors import base_model_latest

pytestmark = pytest.mark.django_db


def _model(name: str, kind=ModelKind.BASE, status=ModelVersion.Status.READY, age_days=0):
    model = ModelVersion.objects.create(name=name, kind=kind, status=status, path=f"/m/{name}")
    # created_at is auto_now_add: set the age afterwards.
    ModelVersion.objects.filter(pk=model.pk).update(
        created_at=timezone.now() - dt.timedelta(days=age_days)
    )
    return model


def test_base_model_latest_is_the_newest_ready_base():
    assert base_model_latest() is None
    _model("base-v1", age_days=3)
    newest = _model("base-v2", age_days=2)
    _model("base-v3", status=ModelVersion.Status.TRAINING, age_days=1)
    _model("base-v4", status=ModelVersion.Status.FAILED)
    _model("RM-helpfulness-V1", kind=ModelKind.REWARD_HELPFULNESS)
    assert base_model_latest() == newest


def test_the_first_policy_starts_from_the_same_base(settings, tmp_path):
    from rlhf.services import base_policy

    settings.MODELS_DIR = tmp_path
    assert base_policy() == ("base", tmp_path / "base")  # none registered: the default folder
    _model("base-v1", age_days=1)
    newest = _model("base-v2")
    assert base_policy() == ("base-v2", Path(newest.path))
