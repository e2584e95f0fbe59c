import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0006_batch_purpose_evaluation"),
        ("rlhf", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="WinRate",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("candidate_name", models.CharField(db_index=True, max_length=200)),
                ("baseline_name", models.CharField(max_length=200)),
                (
                    "judged_by",
                    models.CharField(
                        choices=[
                            ("proxy", "Proxy reward models"),
                            ("judge", "Judge reward model"),
                            ("people", "People"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "judge_name",
                    models.CharField(
                        help_text="The reward model(s) that judged, or the evaluation batch.",
                        max_length=300,
                    ),
                ),
                ("n", models.PositiveIntegerField()),
                ("wins", models.PositiveIntegerField()),
                ("ties", models.PositiveIntegerField()),
                ("losses", models.PositiveIntegerField()),
                ("win_rate", models.FloatField(help_text="(wins + ties / 2) / n")),
                ("ci_low", models.FloatField(help_text="Wilson 95% interval, lower end.")),
                ("ci_high", models.FloatField()),
                (
                    "details",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="Prompts (content hashes), mean scores and lengths.",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "iteration",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="win_rates",
                        to="rlhf.iteration",
                    ),
                ),
            ],
            options={"ordering": ["created_at"]},
        ),
        migrations.CreateModel(
            name="HumanEvaluation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("candidate_name", models.CharField(max_length=200)),
                ("candidate_path", models.CharField(max_length=500)),
                ("baseline_name", models.CharField(max_length=200)),
                ("baseline_path", models.CharField(max_length=500)),
                ("n_prompts", models.PositiveIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[("queued", "Queued"), ("open", "Open for labels"), ("failed", "Failed")],
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "batch",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="human_evaluation",
                        to="annotation.batch",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "iteration",
                    models.ForeignKey(
                        help_text="Whose held-out prompts are asked.",
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="human_evaluations",
                        to="rlhf.iteration",
                    ),
                ),
            ],
            options={"ordering": ["-created_at"]},
        ),
    ]
