"""What the broker holds, for the sweeper and the queue-depth metric.

Redis keeps a queue as a list, and every message a worker has taken but not acknowledged
(running, prefetched or buffered for a batch, or an ETA retry waiting for its time) in one
`unacked` hash, with when it was taken: both can be read, so the sweeper knows exactly which
delivery messages exist. RabbitMQ does not let a client read waiting messages; it tells how
many wait, and the workers tell what they hold.
"""

import base64
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings

from webhooks.models import Message

# A new delivery's message (batched), and a retry's or an older one's.
DELIVERY_TASKS = frozenset({"tally.process_deliveries", "tally.process_event"})
INSPECT_TIMEOUT_SECONDS = 1.0
# Past this many waiting messages, reading them all every sweep costs more than it saves (a
# message is about a kilobyte): count them instead, as on RabbitMQ.
READ_AT_MOST = 20_000


def queue_names() -> list[str]:
    return [settings.DELIVERIES_QUEUE, settings.CALLBACKS_QUEUE, settings.PERIODIC_QUEUE]


def queue_depth(queue: str) -> int:
    """Messages waiting (not yet delivered to a worker) in one queue.

    Redis keeps a queue as a list and deletes the key when it is empty, so a passive
    queue_declare says NOT_FOUND for an empty queue: count it with LLEN. RabbitMQ reports the
    count on a passive declare.
    """
    with current_app.connection_for_read() as connection:
        # The transport's own channel: Redis' has .client, AMQP's has queue_declare.
        channel: Any = connection.default_channel
        if connection.transport.driver_type == "redis":
            return int(channel.client.llen(queue))
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except connection.channel_errors:
            return 0  # not declared yet: nothing was ever sent to it


@dataclass(frozen=True)
class Held:
    """The delivery messages the broker holds: waiting in the queue or taken by a worker."""

    messages: frozenset[Message] = frozenset()
    # Messages sent before generations existed: any message of the delivery counts.
    legacy: frozenset[int] = frozenset()
    # Waiting messages that could not be read (RabbitMQ): how many, not which.
    unidentified: int = 0
    identified_all: bool = field(default=True)

    def holds(self, message: Message) -> bool:
        return message in self.messages or message.delivery_id in self.legacy


def held_delivery_messages() -> Held:
    """Every delivery message the broker holds for the deliveries queue now."""
    queue = settings.DELIVERIES_QUEUE
    with current_app.connection_for_read() as connection:
        channel: Any = connection.default_channel
        if connection.transport.driver_type == "redis":
            client = channel.client
            waiting_count = int(client.llen(queue))
            read_all = waiting_count <= READ_AT_MOST
            waiting = client.lrange(queue, 0, -1) if read_all else []
            # A message a worker took counts while that worker may still run it: taken within
            # the lease, or an ETA retry waiting for its time. One taken longer ago by a worker
            # that died (SIGKILL) stays in `unacked` until Redis' visibility timeout (an hour)
            # and counts as lost: sending it again costs a skipped claim if it does run.
            taken_since = time.time() - settings.STUCK_AFTER_SECONDS
            recent = set(client.zrangebyscore(channel.unacked_index_key, taken_since, "+inf"))
            taken = [
                envelope
                for tag, raw in client.hgetall(channel.unacked_key).items()
                for envelope in [json.loads(raw)]
                if len(envelope) == 3
                and envelope[2] == queue  # [message, exchange, key]
                and (tag in recent or envelope[0].get("headers", {}).get("eta"))
            ]
            bodies = [json.loads(raw) for raw in waiting] + [envelope[0] for envelope in taken]
            unidentified = 0 if read_all else waiting_count
            return _held(_arguments_of_kombu(bodies), unidentified=unidentified)
        try:
            unidentified = int(channel.queue_declare(queue=queue, passive=True).message_count)
        except connection.channel_errors:
            unidentified = 0
    return _held(_arguments_held_by_workers(), unidentified=unidentified)


def _held(arguments: Iterable[list[Any]], *, unidentified: int = 0) -> Held:
    messages: set[Message] = set()
    legacy: set[int] = set()
    for args in arguments:
        if len(args) >= 2 and args[1] is not None:
            messages.add(Message(int(args[0]), int(args[1])))
        elif args:
            legacy.add(int(args[0]))
    return Held(
        messages=frozenset(messages),
        legacy=frozenset(legacy),
        unidentified=unidentified,
        identified_all=unidentified == 0,
    )


def _arguments_of_kombu(bodies: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """The positional arguments of each delivery message (Celery's protocol 2: the
    task name in the headers, `[args, kwargs, embed]` as base64 JSON in the body)."""
    for message in bodies:
        if message.get("headers", {}).get("task") not in DELIVERY_TASKS:
            continue
        try:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(args, list):
            yield args


def _arguments_held_by_workers() -> Iterator[list[Any]]:
    """What live workers hold (running, reserved, ETA-scheduled): a RabbitMQ message a worker
    took is invisible to a queue count until the worker acknowledges or dies."""
    inspect = current_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS)
    listings: list[Any] = [
        inspect.active(),
        inspect.reserved(),
        inspect.scheduled(),
    ]
    for listing in listings:
        for tasks in (listing or {}).values():
            for task in tasks:
                request = task.get("request", task)  # scheduled entries wrap the request
                if request.get("name") in DELIVERY_TASKS:
                    args = request.get("args")
                    if isinstance(args, list):
                        yield args
