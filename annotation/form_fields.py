"""Form fields every app's forms share."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from annotation.columns import ID_MAX


class ModelIdsChoiceField(forms.ModelMultipleChoiceField):
    """A ``ModelMultipleChoiceField`` that refuses ids beyond the id column before querying.

    Django's own field runs ``pk__in`` over the posted values, and SQLite cannot bind an
    integer beyond 64 bits (OverflowError, a 500); such an id names no row, so it gets the
    field's usual "not one of the available choices" error instead.
    """

    def clean(self, value):
        for pk in value or ():
            try:
                number = int(pk)
            except (TypeError, ValueError):
                continue  # not a number: Django's own check names it
            if not 1 <= number <= ID_MAX:
                raise ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": pk},
                )
        return super().clean(value)
