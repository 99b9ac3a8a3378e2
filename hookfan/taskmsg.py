"""Celery task messages for one delivery attempt, built without a Celery app.

The intake writes a request, its delivery records and their first task messages in one Redis
transaction, so a 202 never precedes a durable record and publishing costs no extra round trip.
The message is Celery's protocol 2 in kombu's Redis envelope (what ``apply_async`` writes); the
worker tests consume these messages with a real Celery worker, which is what pins the format.
Arguments are ids only: Flower and logs show ``('<delivery id>', <generation>)``, never content.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid

TASK_NAME = "hookfan.deliver"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"


def task_message(queue: str, delivery_id: str, generation: int) -> str:
    """JSON for LPUSH onto ``queue``: one ``hookfan.deliver(delivery_id, generation)`` task."""
    task_id = str(uuid.uuid4())
    argsrepr = repr((delivery_id, generation))
    body = json.dumps([[delivery_id, generation], {}, _EMBED]).encode()
    return json.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": TASK_NAME, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": _ORIGIN, "ignore_result": True,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    })
