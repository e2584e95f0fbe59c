#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs, starts services, lints (ruff, import
# contracts, mypy), runs pytest twice:
#   1. PostgreSQL + Redis + a real Celery worker: every test, slow ones included;
#   2. SQLite + the filesystem broker (the embedded defaults): every test but the slow ML ones.
# Extra arguments go to both pytest runs (e.g. scripts/test.sh -k queue).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/services.sh
. .venv/bin/activate
export PAIRWISE_SHARED_DATA=${PAIRWISE_SHARED_DATA:-$(cd .. && pwd)/shared/data}
ruff check .
ruff format --check .
lint-imports  # import contracts: Django-free ML, no torch in web code (docs/architecture.md)
mypy  # types of services, selectors, jobs, the queue and the ML folders (pyproject [tool.mypy])
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pairwise}
REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
echo "== PostgreSQL ($PG_URL) + Redis ($REDIS_URL)"
DATABASE_URL=$PG_URL CELERY_BROKER_URL=$REDIS_URL python -m pytest "$@"
echo "== SQLite + filesystem broker"
env -u DATABASE_URL -u CELERY_BROKER_URL python -m pytest -m "not slow" "$@"
