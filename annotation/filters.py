"""Query-string filters of the REST API's lists (django-filter)."""

from __future__ import annotations

import django_filters

from annotation.columns import ID_MAX
from annotation.models import CATEGORY_CHOICES, Comparison, Label


def _batch_id(field_name: str) -> django_filters.NumberFilter:
    # Held to the id column's range: a number beyond it is a 400, not an overflow in the driver.
    return django_filters.NumberFilter(
        field_name=field_name,
        help_text="Batch id.",
        min_value=1,
        max_value=ID_MAX,
        decimal_places=0,
    )


class ComparisonFilter(django_filters.FilterSet):
    batch = _batch_id("batch_id")
    category = django_filters.ChoiceFilter(choices=CATEGORY_CHOICES)
    source = django_filters.CharFilter(help_text="Import name or generator, exact.")

    class Meta:
        model = Comparison
        fields = ["batch", "category", "source"]


class LabelFilter(django_filters.FilterSet):
    batch = _batch_id("comparison__batch_id")
    category = django_filters.ChoiceFilter(
        field_name="comparison__category", choices=CATEGORY_CHOICES
    )

    class Meta:
        model = Label
        fields = ["batch", "category"]
