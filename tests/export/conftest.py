"""Export tests leave no Celery broker state behind.

Celery caches its broker connection pool, producer pool, router and queues on first use,
and an eager ``.delay`` (which serialises through a producer) is a first use. A later
``celery_worker`` test changes the broker folder and routes in the configuration, but the
cached objects would still send to the old ones, and the worker would never see the task.
"""

import pytest
from kombu import pools as kombu_pools

from config.celery import app as celery_app


def reset_celery_caches() -> None:
    kombu_pools.reset()
    celery_app._pool = None
    amqp = celery_app.amqp
    amqp._producer_pool = None
    amqp._rtable = None
    for cached in ("router", "queues", "default_queue"):
        amqp.__dict__.pop(cached, None)


@pytest.fixture(autouse=True)
def _fresh_celery_caches():
    reset_celery_caches()
    yield
    reset_celery_caches()
