"""The Celery app of the side-by-side benchmark: the standard workloads as Celery tasks, configured for the
same durability as Fleet (persistent messages, publisher confirms, acknowledgement after the result is stored).

Worker: /usr/bin/python3 -m celery -A tasks worker ...  (bench.py starts it with the pool of each workload)
Settings come from the environment, which bench.py fills from .fleet/env:
  CELERY_BENCH_BROKER_URL   amqp://... of Fleet's private RabbitMQ (vhost fleet)
  CELERY_BENCH_RESULT_URL   db+postgresql://... of Fleet's private PostgreSQL (database fleet)
  CELERY_BENCH_SCHEMA       schema of Celery's result tables (celery_bench), so nothing touches fleet.*
  CELERY_BENCH_QUEUE        the queue (celery-bench), apart from every queue Fleet uses
  CELERY_BENCH_READY_FILE   written when the worker consumes (its pid), so bench.py knows when to submit
"""

import os

from celery import Celery, signals

import workloads

SCHEMA = os.environ.get("CELERY_BENCH_SCHEMA", "celery_bench")
QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "celery-bench")

app = Celery("fleet_celery_bench")
app.conf.update(
    broker_url=os.environ.get("CELERY_BENCH_BROKER_URL", "amqp://guest@127.0.0.1:5672//"),
    # Wait for RabbitMQ's publisher confirm of every task message (py-amqp confirm_publish), like Fleet's client.
    broker_transport_options={"confirm_publish": True},
    result_backend=os.environ.get("CELERY_BENCH_RESULT_URL", "db+sqlite:///celery-bench.sqlite"),
    # Celery's own tables (celery_taskmeta, celery_tasksetmeta) in their own schema.
    database_table_schemas={"task": SCHEMA, "group": SCHEMA},
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    # Durable queue and persistent messages: a broker restart loses no task (Celery's defaults, said here).
    task_default_delivery_mode="persistent",
    task_create_missing_queues=True,
    # Acknowledge a task only after it ran and its result was stored, so a worker that dies mid-task leaves the
    # message to be redelivered (Fleet acknowledges after the result commit too) ...
    task_acks_late=True,
    # ... and take one message per process at a time, so no process sits on tasks another one could run.
    worker_prefetch_multiplier=1,
    # Results as JSON, the same data Fleet stores.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=False,
    # No STARTED row per task (Celery's default): one result write per task, like Fleet's one final write.
    task_track_started=False,
    # A pool process that dies mid-task (killed, out of memory) requeues its task instead of acknowledging it as
    # failed: redelivery, as Fleet does for a worker that dies.
    task_reject_on_worker_lost=True,
    worker_send_task_events=False,
    # The bench finds workers by pid and never asks them anything remotely; no pidbox queues in Fleet's vhost.
    worker_enable_remote_control=False,
)


def _register(name):
    handler = workloads.HANDLERS[name]

    @app.task(name=f"bench.{name}")
    def run(payload):
        return handler(payload)

    return run


TASKS = {name: _register(name) for name in workloads.NAMES}


@signals.worker_ready.connect
def _announce_ready(**_):
    path = os.environ.get("CELERY_BENCH_READY_FILE")
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
