from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("modeling", "0002_scorejob"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="is_judge",
            field=models.BooleanField(
                default=False,
                help_text="Judges new policies in evaluations; never a policy's reward.",
            ),
        ),
    ]
