"""The Celery app. Broker and queues come from settings (see config/settings.py).

Embedded default: kombu's filesystem transport under var/celery, so a laptop needs no
broker server. Production: CELERY_BROKER_URL=redis://... and GPU workers consume the
``gpu`` queue (``celery -A config worker -Q gpu``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pairwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
