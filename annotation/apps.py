from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs):
    from annotation.services import roles_ensure

    roles_ensure()


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        # Groups need every app's permissions, which exist only after all migrations ran.
        post_migrate.connect(_ensure_roles, dispatch_uid="annotation.ensure_roles")
