"""Celery settings for Flower when hookfan reaches Redis through Sentinel.

Flower runs as ``celery -b 'sentinel://...;sentinel://...' --workdir=<this directory>
--config=flower_sentinel flower``: the chart mounts this file from its ConfigMap
``<release>-flower-sentinel``, compose.ha.yaml from the repository. kombu's sentinel transport
takes the name the Sentinels monitor the primary under only as a transport option, never from
the URL; it comes from HOOKFAN_REDIS_SENTINEL_MASTER, the variable every hookfan process reads.
Flower's own queue-length view (``/api/queues/length``) reads TLS options from
``broker_use_ssl``, not from the URL, so the first URL's ``ssl_*`` query is copied there.
"""

import os

from kombu.utils.url import parse_url

broker_transport_options = {"master_name": os.environ["HOOKFAN_REDIS_SENTINEL_MASTER"]}

_ssl = parse_url(os.environ.get("CELERY_BROKER_URL", "sentinel://").split(";")[0]).get("ssl")
if _ssl:
    broker_use_ssl = _ssl
