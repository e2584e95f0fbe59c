"""Pairwise settings, all read from environment variables with laptop-safe defaults.

Embedded defaults (no env at all): SQLite at var/pairwise.sqlite3, Celery over the
filesystem broker at var/celery, models under var/models, DEBUG on. Production sets
DJANGO_DEBUG=false, DJANGO_SECRET_KEY, DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://...
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from annotation.columns import ID_MAX  # plain constants: safe before apps load

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY")  # no default outside development
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Secure by default outside development (DEBUG off): redirect http to https, send
# cookies over https only, and tell browsers to keep to https (HSTS). Behind a proxy that
# ends TLS, set DJANGO_SECURE_PROXY_SSL_HEADER=true (it must set X-Forwarded-Proto); a
# plain-http deployment turns these off one by one, knowingly.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# The preload flag only allows a submission to the browsers' preload list (a deliberate
# step of the domain's owner); it submits nothing itself.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Where Pairwise keeps its own files: the SQLite database, broker folders, model
# checkpoints, export snapshots. One volume in production.
DATA_DIR = Path(env("PAIRWISE_DATA_DIR", default=str(BASE_DIR / "var")))
MODELS_DIR = Path(env("PAIRWISE_MODELS_DIR", default=str(DATA_DIR / "models")))
SNAPSHOTS_DIR = Path(env("PAIRWISE_SNAPSHOTS_DIR", default=str(DATA_DIR / "snapshots")))
# Real preference data beside the project (../shared/data); absent on some machines.
SHARED_DATA_DIR = Path(
    env("PAIRWISE_SHARED_DATA", default=str(BASE_DIR.parent / "shared" / "data"))
)
DATA_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: /api/docs/ works offline
    "django_htmx",
    "annotation",
    "modeling",
    "rlhf",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.LoginRequiredExceptApiMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "annotation.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'pairwise.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web process and the worker share one SQLite file: wait on locks instead of
    # failing, and use WAL so readers never block the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not :memory:, so a real worker process in the tests sees the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": env("SQLITE_TEST_NAME", default=str(DATA_DIR / "test.sqlite3"))
    }
elif DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # The annotator queue's prepared statements (annotation.prepared) are planned once,
    # generically: PostgreSQL's default plans the first five executions with their
    # parameters (3 ms each for the next-task statement) before settling on the generic
    # plan it then keeps, on every connection and after every re-prepare. Only cached
    # plans are affected (prepared statements, foreign-key checks); the ORM's queries are
    # planned per execution as before.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = (
        options.get("options", "") + " -c plan_cache_mode=force_generic_plan"
    ).strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rate limits count in this cache: share it between web processes in production
# (PAIRWISE_CACHE_URL=redis://host:6379/1), or each process counts on its own.
CACHES = {"default": env.cache("PAIRWISE_CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# Sign-in attempts per username and client address (config/auth.py): N/s, N/m, N/h or N/d.
PAIRWISE_LOGIN_RATE = env("PAIRWISE_LOGIN_RATE", default="10/m")
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without collectstatic (a laptop, tests), whitenoise serves straight from the finders.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads of preference data can be large; files are streamed to disk above this size.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Imports from the batch page and the API: the largest file, and the largest data once
# decompressed (HH's helpful-base train split is 16 MB gzipped, 70 MB of JSONL); larger
# files go through `manage.py pairwise_import`. Problems listed per import (then counted).
PAIRWISE_IMPORT_MAX_BYTES = env.int("PAIRWISE_IMPORT_MAX_BYTES", default=100 * 1024 * 1024)
PAIRWISE_IMPORT_MAX_PROBLEMS = env.int("PAIRWISE_IMPORT_MAX_PROBLEMS", default=200)
# Review: a label is flagged when the reward model prefers the other response with at
# least this probability, σ(r_other − r_preferred) (modeling.jobs.label_check_execute).
PAIRWISE_REVIEW_RM_CONFIDENCE = env.float("PAIRWISE_REVIEW_RM_CONFIDENCE", default=0.9)
# Queue order by uncertainty (modeling.jobs.queue_priorities_compute): how many of a
# category's newest reward models make the ensemble, and how often beat looks for batches
# whose order is missing or older than their newest reward model.
PAIRWISE_QUEUE_ENSEMBLE_SIZE = env.int("PAIRWISE_QUEUE_ENSEMBLE_SIZE", default=3)
PAIRWISE_QUEUE_PRIORITY_REFRESH_SECONDS = env.int(
    "PAIRWISE_QUEUE_PRIORITY_REFRESH_SECONDS", default=300
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {
        "auth-token": env("PAIRWISE_AUTH_TOKEN_RATE", default="10/m"),
    },
    # One error body for every endpoint: {"detail": ..., "errors": {field: [...]}} (docs/api.md).
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pairwise API",
    "DESCRIPTION": "Annotation queue, labels, batches, models and exports of Pairwise.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name per choice set that several fields share (else drf-spectacular guesses).
    "ENUM_NAME_OVERRIDES": {
        "ChoiceEnum": "annotation.models.CHOICE_CHOICES",
        "SafetyTagEnum": "annotation.models.SAFETY_TAG_CHOICES",
        "BatchStatusEnum": "annotation.models.Batch.Status",
        "SnapshotStatusEnum": "annotation.models.Snapshot.Status",
        "ModelVersionStatusEnum": "modeling.models.ModelVersion.Status",
        "ScoreJobStatusEnum": "modeling.models.ScoreJob.Status",
        "IterationStatusEnum": "rlhf.models.Iteration.Status",
        "StageStatusEnum": "rlhf.models.IterationStage.Status",
    },
    # <id:...> in paths (annotation/url_converters.py): an integer within the id columns.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": ID_MAX}
    },
    # Every 4xx in the one error shape (config/api_errors.py), declared on every operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api_schema.declare_error_responses",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Long jobs (training runs, score jobs, iteration stages, snapshot builds) hold a lease with a
# heartbeat (config/leases.py): a running job stamps it every JOB_STALE_SECONDS / 6, and a
# sweep queues again any job whose heartbeat is older than JOB_STALE_SECONDS. Celery beat
# runs the sweep every JOB_SWEEP_SECONDS; each worker runs it when it starts and once more
# JOB_STALE_SECONDS + JOB_SWEEP_SECONDS later. A killed worker's job resumes within about
# JOB_STALE_SECONDS + JOB_SWEEP_SECONDS.
JOB_STALE_SECONDS = env.int("PAIRWISE_JOB_STALE_SECONDS", default=180)
JOB_SWEEP_SECONDS = env.int("PAIRWISE_JOB_SWEEP_SECONDS", default=60)

# Celery. The filesystem broker needs no server; its folders live under DATA_DIR.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env("PAIRWISE_BROKER_DIR", default=str(DATA_DIR / "celery" / "broker")))
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis gives an unacknowledged message back (its worker died) after this many seconds;
    # its default is an hour. A redelivered message of a job that is still running is a
    # no-op (the lease), so this need not exceed the longest job, only the countdown of the
    # sweep a starting worker sends (JOB_STALE_SECONDS + JOB_SWEEP_SECONDS).
    _visibility_timeout = env.int("PAIRWISE_BROKER_VISIBILITY_TIMEOUT", default=900)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _visibility_timeout}
    if _visibility_timeout <= JOB_STALE_SECONDS + JOB_SWEEP_SECONDS:
        raise ImproperlyConfigured(
            "PAIRWISE_BROKER_VISIBILITY_TIMEOUT must exceed PAIRWISE_JOB_STALE_SECONDS + "
            "PAIRWISE_JOB_SWEEP_SECONDS, or the worker-start sweep is delivered twice."
        )
# Job state lives in our own tables (runs, iterations, snapshots), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True  # a killed worker's message is redelivered (and the sweep, above)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env("PAIRWISE_QUEUE", default="default")
# Training and generation can go to their own queue so GPU workers take just them
# (PAIRWISE_ML_QUEUE=gpu, and start ``celery -A config worker -Q gpu`` on the GPU host).
CELERY_TASK_ROUTES = {
    "modeling.tasks.*": {"queue": env("PAIRWISE_ML_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)},
    "rlhf.tasks.*": {"queue": env("PAIRWISE_ML_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)},
}
CELERY_BEAT_SCHEDULE = {
    "release-expired-assignments": {
        "task": "annotation.tasks.release_expired_assignments",
        "schedule": 300.0,
    },
    "requeue-stale-jobs": {
        "task": "config.celery.jobs_requeue_stale",
        "schedule": float(JOB_SWEEP_SECONDS),
    },
    "queue-priorities-refresh": {
        "task": "modeling.tasks.queue_priorities_refresh",
        "schedule": float(PAIRWISE_QUEUE_PRIORITY_REFRESH_SECONDS),
    },
}

# Annotation queue: an unanswered task goes back to the pool after this many seconds.
ASSIGNMENT_TTL_SECONDS = env.int("PAIRWISE_ASSIGNMENT_TTL_SECONDS", default=30 * 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
