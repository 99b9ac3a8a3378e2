"""Celery task messages for one delivery attempt, built without a Celery app.

The intake writes a request, its delivery records and their first task messages in one Redis
transaction, so a 202 never precedes a durable record and publishing costs no extra round trip.
The message is Celery's protocol 2 in kombu's Redis envelope, cut to the fields a Celery 5 worker
reads (about 400 bytes instead of the ~1 KB ``apply_async`` writes: every pending copy keeps one
in Redis). The body is stored as plain JSON (no ``body_encoding``), which kombu passes through
as it does for ``utf-8``; the worker tests consume these messages with a real Celery worker,
which is what pins the format. Arguments are ids only: Flower and logs show
``('<delivery id>', <generation>)``, never content.
"""

from __future__ import annotations

import json
import uuid

TASK_NAME = "hookfan.deliver"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def task_message(queue: str, delivery_id: str, generation: int) -> str:
    """JSON for LPUSH onto ``queue``: one ``hookfan.deliver(delivery_id, generation)`` task."""
    # One random id serves as task id, root id and kombu's delivery tag (the key of the
    # message in kombu's ``unacked`` hash): each only has to be unique per message.
    task_id = str(uuid.uuid4())
    return _dumps({
        "body": _dumps([[delivery_id, generation], {}, {}]),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": TASK_NAME, "id": task_id, "root_id": task_id,
            "argsrepr": repr((delivery_id, generation)), "ignore_result": True,
        },
        "properties": {
            "delivery_tag": task_id, "priority": 0,
            "delivery_info": {"exchange": "", "routing_key": queue},
        },
    })
