"""BASELINE (see bench/naive/__init__.py): a backlog for the drain measurement, written while
the naive worker is stopped. Publishes, through the baseline's own Celery app, exactly the
messages its intake would for ``REQUESTS`` POSTs of ``SIZE``-byte JSON bodies: one ``deliver``
message per backend with the body inside.

Run as ``python -m bench.naive.backlog REQUESTS SIZE`` with the baseline's environment
(``NAIVE_BROKER``, ``NAIVE_BACKENDS``). Several threads publish at once so Redis can fold their
writes into fewer ``fsync`` calls; each thread has its own producer (connection).
"""

from __future__ import annotations

import sys
import threading

from bench.naive.app import BACKENDS
from bench.naive.tasks import app, deliver

THREADS = 8


def body(size: int) -> str:
    head = '{"pad":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def publish(requests: int, size: int) -> None:
    args = ("POST", "/", {"Content-Type": "application/json"}, body(size))

    def run(share: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(share):
                for url in BACKENDS:
                    deliver.apply_async((url, *args), producer=producer)

    shares = [requests // THREADS + (i < requests % THREADS) for i in range(THREADS)]
    threads = [threading.Thread(target=run, args=(n,)) for n in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    publish(int(sys.argv[1]), int(sys.argv[2]))
