#!/usr/bin/python3
"""Publish Fleet tasks as plain JSON straight to RabbitMQ, with Debian's pika (apt-get install python3-pika).

    . .fleet/env
    /usr/bin/python3 samples/python/publish.py --type sha256 --count 10
    /usr/bin/python3 samples/python/publish.py --type sleep --payload '{"ms": 200}' --count 3

Every option has an environment default: FLEET_AMQP_URL (as in .fleet/env), FLEET_PUBLISH_TYPE,
FLEET_PUBLISH_COUNT, FLEET_PUBLISH_PAYLOAD, FLEET_PUBLISH_QUEUE. Prints each task id on stdout, one per line, once
the broker has confirmed its message; a summary goes to stderr. Exits non-zero if any message is not confirmed.

The body follows src/Fleet.Contracts/task-message.schema.json. It goes to the fanout exchange named like the lane's
queue (fleet-cpu or fleet-io), persistent, with publisher confirms and mandatory=True, so a message that reaches no
queue (no worker has declared the queues yet) is an error here instead of a silent loss.
"""

import argparse
import datetime
import json
import os
import sys
import uuid

import pika

# The lanes, as TaskQueues in src/Fleet.Contracts names them; CPU-bound built-in types go to fleet-cpu.
CPU_QUEUE, IO_QUEUE = "fleet-cpu", "fleet-io"
CPU_TYPES = {"sha256", "sieve", "heat"}

# The standard workloads (docs/task-types.md#standard-workloads): task i gets seed i, like `fleet submit --workload`.
STANDARD_PAYLOADS = {
    "noop": lambda i: {},
    "sha256": lambda i: {"size_kb": 1024, "rounds": 32, "seed": i},
    "sieve": lambda i: {"limit": 2000000},
    "sleep": lambda i: {"ms": 50},
    "heat": lambda i: {"n": 256, "steps": 1000, "seed": i},
}

PERSISTENT = 2  # AMQP delivery_mode: the broker writes the message to disk (pika.spec.PERSISTENT_DELIVERY_MODE)


def parse_args():
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Publish Fleet tasks as plain JSON to RabbitMQ.")
    parser.add_argument("--url", default=env("FLEET_AMQP_URL"), help="amqp://user:pass@host:port/vhost (FLEET_AMQP_URL)")
    parser.add_argument("--type", default=env("FLEET_PUBLISH_TYPE", "sha256"), help="task type (default sha256)")
    parser.add_argument("--count", type=int, default=int(env("FLEET_PUBLISH_COUNT", "1")), help="how many tasks (default 1)")
    parser.add_argument("--payload", default=env("FLEET_PUBLISH_PAYLOAD"),
                        help="payload as a JSON object (default: the type's standard workload payload, or {})")
    parser.add_argument("--queue", default=env("FLEET_PUBLISH_QUEUE"), choices=[CPU_QUEUE, IO_QUEUE],
                        help="lane (default: fleet-cpu for sha256, sieve, heat; fleet-io otherwise)")
    parser.add_argument("--timeout-seconds", type=int, default=None, help="time limit of one execution")
    args = parser.parse_args()
    if not args.url:
        parser.error("no AMQP URL: pass --url or set FLEET_AMQP_URL (. .fleet/env)")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.payload is not None:
        try:
            args.payload = json.loads(args.payload)
        except json.JSONDecodeError as error:
            parser.error(f"--payload is not JSON: {error}")
        if not isinstance(args.payload, dict):
            parser.error("--payload must be a JSON object")
    return args


def payload_for(args, index):
    if args.payload is not None:
        return args.payload
    return STANDARD_PAYLOADS.get(args.type, lambda i: {})(index)


def main():
    args = parse_args()
    queue = args.queue or (CPU_QUEUE if args.type in CPU_TYPES else IO_QUEUE)
    batch_id = str(uuid.uuid4()) if args.count > 1 else None

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    try:
        channel = connection.channel()
        # Publisher confirms: basic_publish now waits for the broker's ack and raises NackError or UnroutableError.
        channel.confirm_delivery()
        for index in range(args.count):
            task_id = str(uuid.uuid4())
            body = {
                "taskId": task_id,
                "type": args.type,
                "payload": payload_for(args, index),
                "batchId": batch_id,
                "submittedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            }
            if args.timeout_seconds is not None:
                body["timeoutSeconds"] = args.timeout_seconds
            channel.basic_publish(
                exchange=queue,  # the fanout exchange named like the queue; or exchange="", routing_key=queue
                routing_key="",
                body=json.dumps(body).encode("utf-8"),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=PERSISTENT,
                    message_id=task_id,
                ),
                mandatory=True,
            )
            print(task_id, flush=True)
    finally:
        if connection.is_open:
            connection.close()

    print(f"published {args.count} {args.type} task(s) to {queue}" + (f", batch {batch_id}" if batch_id else ""),
          file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except pika.exceptions.AMQPError as error:
        print(f"publish.py: {error!r}", file=sys.stderr)
        sys.exit(1)
