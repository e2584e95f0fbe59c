"""Query-string filters of the REST API's lists (django-filter)."""

from __future__ import annotations

import django_filters

from annotation.models import CATEGORY_CHOICES, Comparison, Label


class ComparisonFilter(django_filters.FilterSet):
    batch = django_filters.NumberFilter(field_name="batch_id", help_text="Batch id.")
    category = django_filters.ChoiceFilter(choices=CATEGORY_CHOICES)
    source = django_filters.CharFilter(help_text="Import name or generator, exact.")

    class Meta:
        model = Comparison
        fields = ["batch", "category", "source"]


class LabelFilter(django_filters.FilterSet):
    batch = django_filters.NumberFilter(field_name="comparison__batch_id", help_text="Batch id.")
    category = django_filters.ChoiceFilter(
        field_name="comparison__category", choices=CATEGORY_CHOICES
    )

    class Meta:
        model = Label
        fields = ["batch", "category"]
