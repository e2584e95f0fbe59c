"""factory_boy factories for the models tests need most."""

import factory
from django.contrib.auth import get_user_model

from annotation import services
from annotation.domain import Category, Role, Turn
from annotation.importers import ResponseIn
from annotation.models import Batch


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        self.save()
        if extracted:
            services.user_set_role(user=self, role=extracted)


class BatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Batch

    name = factory.Sequence(lambda n: f"batch-{n}")
    iteration = 0
    labels_per_comparison = 1


_counter = iter(range(10**9))


def make_comparison(batch, *, category=Category.HELPFULNESS, turns=None, a=None, b=None):
    n = next(_counter)
    turns = turns or [
        Turn(Role.USER, f"How do I boil an egg? ({n})"),
        Turn(Role.ASSISTANT, "Do you want it soft or hard?"),
        Turn(Role.USER, "Hard, please."),
    ]
    return services.comparison_create(
        batch=batch,
        turns=turns,
        response_a=ResponseIn(
            a or f"Boil it for ten minutes, then cool it in cold water. ({n})",
            "RLHF-V1",
            {"temperature": 0.7},
        ),
        response_b=ResponseIn(
            b or f"Eggs are laid by hens. ({n})", "RLHF-V0", {"temperature": 1.0}
        ),
        category=category,
        source="test",
    )


def open_batch_with(n: int, *, labels_per_comparison=1, category=Category.HELPFULNESS, **kw):
    batch = BatchFactory(labels_per_comparison=labels_per_comparison, **kw)
    for _ in range(n):
        make_comparison(batch, category=category)
    return services.batch_transition(batch=batch, to=Batch.Status.OPEN)


def native_row(i=0, **over) -> dict:
    """One row of the native import format (README, "Import formats"); ``over`` replaces keys."""
    row = {
        "id": f"r{i}",
        "category": "helpfulness",
        "prompt": [{"role": "user", "content": f"Question {i}?"}],
        "response_a": {
            "text": "Answer one",
            "model_version": "RLHF-V1",
            "sampling": {"temperature": 0.7},
        },
        "response_b": {
            "text": "Answer two",
            "model_version": "RLHF-V1",
            "sampling": {"temperature": 1.0},
        },
    }
    row.update(over)
    return row
