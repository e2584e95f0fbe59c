from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs):
    from annotation.services import roles_ensure

    roles_ensure()


def _install_functions(sender, using="default", **kwargs):
    from annotation.queue.labels import label_and_next_install

    label_and_next_install(using)


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        # Groups need every app's permissions, which exist only after all migrations ran.
        post_migrate.connect(_ensure_roles, dispatch_uid="annotation.ensure_roles")
        # The label-and-next function of PostgreSQL (annotation.queue.labels) follows the
        # models: created from them after every migrate, like the roles.
        post_migrate.connect(
            _install_functions, sender=self, dispatch_uid="annotation.install_functions"
        )
