#!/bin/sh
# Container entry point: wait for the database, migrate (web only), then run the role.
#   web     gunicorn on :8000 (migrates first; PAIRWISE_MIGRATE=0 skips it)
#   worker  celery worker (PAIRWISE_WORKER_QUEUES, default "default")
#   beat    celery beat (periodic jobs: releasing expired tasks, re-queueing a dead worker's jobs)
#   *       any other command, e.g. "python manage.py createsuperuser"
set -eu

wait_for_db() {
    python - <<'PY'
import os, sys, time

import django
from django.db import connections
from django.db.utils import OperationalError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
for attempt in range(60):
    try:
        connections["default"].ensure_connection()
        sys.exit(0)
    except OperationalError as exc:
        print(f"waiting for the database ({exc.__class__.__name__})", flush=True)
        time.sleep(1)
sys.exit("database not reachable after 60 s")
PY
}

role="${1:-web}"
case "$role" in
    web)
        wait_for_db
        if [ "${PAIRWISE_MIGRATE:-1}" = "1" ]; then
            python manage.py migrate --noinput
        fi
        # Into the data volume (STATIC_ROOT), served by WhiteNoise; fresh on every start so
        # a new image never serves the old volume's files.
        python manage.py collectstatic --noinput --clear -v 0
        exec gunicorn config.wsgi \
            --bind 0.0.0.0:8000 \
            --worker-class gthread \
            --workers "${GUNICORN_WORKERS:-2}" \
            --threads "${GUNICORN_THREADS:-8}" \
            --keep-alive 30 \
            --access-logfile - \
            --forwarded-allow-ips "${GUNICORN_FORWARDED_ALLOW_IPS:-127.0.0.1}"
        ;;
    worker)
        wait_for_db
        exec celery -A config worker -l INFO -Q "${PAIRWISE_WORKER_QUEUES:-default}" \
            --concurrency "${CELERY_CONCURRENCY:-1}"
        ;;
    beat)
        wait_for_db
        exec celery -A config beat -l INFO --schedule /data/celerybeat-schedule
        ;;
    *)
        exec "$@"
        ;;
esac
