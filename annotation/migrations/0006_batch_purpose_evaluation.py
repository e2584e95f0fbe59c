from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0005_fewer_indexes_on_the_hot_tables"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="purpose",
            field=models.CharField(
                choices=[("training", "Training"), ("evaluation", "Evaluation")],
                default="training",
                help_text="Evaluation batches are never used to train a model.",
                max_length=10,
            ),
        ),
    ]
