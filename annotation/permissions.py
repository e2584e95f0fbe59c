"""Roles are Django groups carrying model permissions; checks read permissions, not names.

- annotator: label comparisons (``annotation.add_label``) and write ideal responses on the
  live page (``annotation.add_demonstration``)
- researcher: export preference data (``annotation.export_data``)
- reviewer: review flagged and disputed labels and record verdicts
  (``annotation.review_labels``)
- admin: manage batches, review labels and launch training (``annotation.manage_batches``,
  ``annotation.review_labels``, ``modeling.launch_training``); superusers have everything.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

ANNOTATE = "annotation.add_label"
DEMONSTRATE = "annotation.add_demonstration"
EXPORT = "annotation.export_data"
MANAGE_BATCHES = "annotation.manage_batches"
REVIEW = "annotation.review_labels"
LAUNCH_TRAINING = "modeling.launch_training"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    "annotator": [ANNOTATE, DEMONSTRATE],
    "researcher": [EXPORT],
    "reviewer": [REVIEW],
    "admin": [ANNOTATE, DEMONSTRATE, EXPORT, MANAGE_BATCHES, REVIEW, LAUNCH_TRAINING],
}


def user_roles(user) -> dict[str, bool]:
    authenticated = bool(user and user.is_authenticated)
    return {
        "annotate": authenticated and user.has_perm(ANNOTATE),
        "export": authenticated and user.has_perm(EXPORT),
        "manage": authenticated and user.has_perm(MANAGE_BATCHES),
        "review": authenticated and user.has_perm(REVIEW),
        "train": authenticated and user.has_perm(LAUNCH_TRAINING),
    }


def perm_class(perm: str) -> type[BasePermission]:
    """A DRF permission class requiring ``perm`` (403 otherwise, 401 when anonymous)."""

    class _HasPerm(BasePermission):
        message = f"You need the '{perm}' permission."

        def has_permission(self, request, view):
            return bool(
                request.user and request.user.is_authenticated and request.user.has_perm(perm)
            )

    _HasPerm.__name__ = f"Has_{perm.replace('.', '_')}"
    return _HasPerm


CanAnnotate = perm_class(ANNOTATE)
CanExport = perm_class(EXPORT)
CanManageBatches = perm_class(MANAGE_BATCHES)
CanLaunchTraining = perm_class(LAUNCH_TRAINING)
