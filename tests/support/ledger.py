"""Reading hookfan's ledger in Redis from tests."""

from typing import Any

from hookfan import keys


def request_stored(r: Any, request_id: str) -> bool:
    """Whether the request (its body) is still stored. Once its last copy is delivered the hash
    goes; for a few seconds after acceptance a small ``'d'`` marker takes its key (see
    ``keys.REQUEST``), which is not the request."""
    return bool(r.type(keys.request(request_id)) == b"hash")
