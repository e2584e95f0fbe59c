#!/usr/bin/env bash
# Install Pairwise and run it with the embedded defaults: SQLite, the filesystem Celery
# broker with a worker started alongside, demo users and a demo batch.
#   bash scripts/demo.sh            then open http://127.0.0.1:8000/
#   bash scripts/demo.sh --loop     first run one whole RLHF iteration on its own (minutes)
# PAIRWISE_PORT changes the port; PAIRWISE_BEAT=1 also starts celery beat (periodic jobs);
# PAIRWISE_DEMO_LOOP=1 is the same as --loop. Each --loop run adds one iteration (RLHF-V{N}):
# a simulated annotator labels the open batch, then reward models, rejection sampling, PPO,
# evaluation and the next batch (see docs/rlhf.md, "See the whole loop").
set -euo pipefail
LOOP=${PAIRWISE_DEMO_LOOP:-0}
for arg in "$@"; do
  case "$arg" in
    --loop) LOOP=1 ;;
    *) echo "usage: bash scripts/demo.sh [--loop]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
PORT=${PAIRWISE_PORT:-8000}
LOG_DIR=${PAIRWISE_DATA_DIR:-var}/log
mkdir -p "$LOG_DIR"

python manage.py migrate --noinput
# A demo on this machine: its users' published password is what we want here.
python manage.py pairwise_demo --demo-passwords
if [ "$LOOP" = 1 ]; then
  python manage.py pairwise_demo_loop --demo-passwords
fi

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 130' INT TERM

celery -A config worker -P solo -l INFO >"$LOG_DIR/worker.log" 2>&1 &
pids+=($!)
if [ "${PAIRWISE_BEAT:-0}" = 1 ]; then
  celery -A config beat -l INFO -s "${PAIRWISE_DATA_DIR:-var}/celerybeat-schedule" >"$LOG_DIR/beat.log" 2>&1 &
  pids+=($!)
fi

cat <<MSG

  Pairwise is running at http://127.0.0.1:${PORT}/
  Log in (password for all: pairwise-demo):
    annotator1, annotator2   label comparisons
    researcher               export preference data
    admin                    batches, models, RLHF, Django admin
  Celery worker log: $LOG_DIR/worker.log. Stop with Ctrl+C.

MSG
# In the background and waited for, so that Ctrl+C or a TERM to this script reaches the trap
# at once and stops the server and the worker together.
python manage.py runserver "127.0.0.1:${PORT}" &
server=$!
pids+=("$server")
wait "$server"
