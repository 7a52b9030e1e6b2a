"""What is waiting in the broker, for the sweeper and the queue-depth metric."""

from typing import Any

from celery import current_app


def queue_names() -> list[str]:
    return [current_app.conf.task_default_queue]


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
