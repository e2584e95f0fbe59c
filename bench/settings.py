"""Settings for benchmark servers only: the production settings plus the bare baseline view.

The baseline view never exists in production because only this module routes to it
(``DJANGO_SETTINGS_MODULE=bench.settings``, set by ``bench/annotator_cycle.py``).
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
