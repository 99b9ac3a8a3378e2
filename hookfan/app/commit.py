"""Group commit: the accepts of concurrent requests in one app process share a Redis round trip.

A request thread hands its accept (one call of the ``accept`` script) to :class:`GroupCommit`.
If no round trip is under way, that thread sends its own call at once (no waiting for a batch
to fill). Calls handed in while a round trip is under way queue up; when it ends, the first
queued thread sends all of them in one write on one connection. Redis reads them together,
runs each script on its own, and with ``appendfsync always`` writes and ``fsync``s the AOF once
before it replies to any of them: each request is answered only after its own write is
committed, and concurrent requests share the system calls and the ``fsync``.

The outcome of each call is its own: a script error (Redis full) fails only that call. A
connection that breaks after the calls were sent leaves their outcome unknown
(:class:`Unknown`); the intake then looks before answering (:meth:`Store.resolve`).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.exceptions import NoScriptError


class Unknown(redis.ConnectionError):
    """The call was sent, or may have been, but its reply was lost: it may have committed."""


class NotSent(redis.ConnectionError):
    """No byte of the call reached Redis (no connection): it did not commit."""


class NotAcknowledged(redis.ConnectionError):
    """The call committed on the primary, but fewer replicas than required acknowledged it
    in time (or whether they did is unknown): its 202 cannot be vouched for."""


_PENDING = object()


class _Call:
    __slots__ = ("args", "result", "error", "wake", "lead")

    def __init__(self, args: Sequence[Any]) -> None:
        self.args = args
        self.result: Any = _PENDING
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lead = False

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


IDLE_CHECK = 0.5
"""A connection unused this long is checked for a close from Redis's side before use."""
LINGER = 0.001
"""Longest a leader waits for requests of its process that are already being read (never for
a request that has not arrived: alone, a request is sent at once)."""


class GroupCommit:
    """Run ``script`` (a redis-py ``Script``) for many threads, batching concurrent calls."""

    def __init__(self, client: redis.Redis, script: Any, min_acks: int = 0,
                 ack_timeout: float = 1.0) -> None:
        pool = client.connection_pool
        self.min_acks = min_acks
        """Replicas that must acknowledge each batch (one ``WAIT`` after its calls); 0: none."""
        self.ack_timeout = ack_timeout
        # One connection of its own, used by one leader at a time: no pool bookkeeping per
        # round trip. Same settings as the client's (timeouts, TLS, password).
        self.conn: Any = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        self._reader: Any = None
        self._used = 0.0
        self.script = script
        self._mutex = threading.Lock()
        self._arrived = threading.Condition(self._mutex)
        self._queue: list[_Call] = []
        self._busy = False
        self._coming = 0
        self._local = threading.local()
        self.batches = 0
        """Round trips made (for tests and the bench)."""

    def expect(self) -> None:
        """This thread's request may call soon: a leader waits a little for it (see
        :data:`LINGER`). Undone by the call, or by :meth:`settled` when it never comes."""
        with self._mutex:
            self._coming += 1
        self._local.expected = True

    def settled(self) -> None:
        """This thread's request is answered; if it never called, stop expecting it."""
        if getattr(self._local, "expected", False):
            self._local.expected = False
            with self._mutex:
                self._coming -= 1
                if self._coming == 0:
                    self._arrived.notify()

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply. Raises redis.ResponseError (the script failed: nothing written),
        :class:`NotSent` or :class:`Unknown`."""
        call = _Call(("EVALSHA", self.script.sha, len(keys), *keys, *args))
        expected = getattr(self._local, "expected", False)
        self._local.expected = False
        with self._mutex:
            self._queue.append(call)
            if expected:
                self._coming -= 1
                if self._coming == 0:
                    self._arrived.notify()
            lead = not self._busy
            self._busy = True
        if not lead:
            call.wake.acquire()  # released with an outcome, or to lead the next batch
            if not call.lead:
                return call.outcome()
        with self._mutex:
            if self._coming > 0:  # requests of this process already on their way: join them
                self._arrived.wait_for(lambda: self._coming <= 0, timeout=LINGER)
            batch, self._queue = self._queue, []
        try:
            self._send(batch)
        except Exception:  # noqa: S110 - each call in the batch already holds its outcome
            pass
        finally:
            with self._mutex:
                if self._queue:
                    nxt = self._queue[0]
                    nxt.lead = True
                    nxt.wake.release()
                else:
                    self._busy = False
        return call.outcome()

    def _send(self, batch: list[_Call]) -> None:
        """One round trip for ``batch``; each call gets its outcome, and every other caller
        in it is released."""
        try:
            self._round_trip(batch)
            missing = [c for c in batch if isinstance(c.error, NoScriptError)]
            if missing:  # Redis lost its script cache (a restart): load it, send those again
                self.script.sha = self.script.registered_client.script_load(self.script.script)
                for c in missing:
                    c.args = ("EVALSHA", self.script.sha, *c.args[2:])
                    c.error = None
                self._round_trip(missing)
            self._refused_as_replica(batch)
        finally:  # every waiter must hear something, whatever went wrong here
            for c in batch:
                if c.error is None and c.result is _PENDING:
                    c.error = Unknown("no reply")
                c.wake.release()

    def _refused_as_replica(self, batch: list[_Call]) -> None:
        """Calls the Redis on this connection refused as a replica (a failover demoted it)
        committed nothing: :class:`NotSent`. The connection is dropped, so the next round
        trip connects anew (through Sentinel: to the primary it names now)."""
        refused = [c for c in batch if c.error is not None and _read_only(c.error)]
        if refused:
            self.conn.disconnect()
            for c in refused:
                c.error = NotSent("READONLY")

    def _round_trip(self, batch: list[_Call]) -> None:
        """Send ``batch`` in one write and read its replies. redis-py opens the connection
        (TLS, password, database, RESP2); the calls and replies then go over its socket
        directly, packed and parsed by hiredis: about a third less CPU per call than through
        redis-py's command path."""
        conn = self.conn
        self.batches += 1
        now = time.monotonic()
        if conn._sock is not None and now - self._used > IDLE_CHECK and _closed(conn._sock):
            conn.disconnect()  # Redis closed it while it was idle (a restart): open a new one
        try:
            if conn._sock is None:
                conn.connect()
                self._reader = hiredis.Reader(replyError=redis.ResponseError)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            for c in batch:
                c.error = NotSent(type(exc).__name__)
            conn.disconnect()
            return
        sock, reader = conn._sock, self._reader
        wait = (("WAIT", self.min_acks, max(1, round(self.ack_timeout * 1000))),
                ) if self.min_acks else ()
        try:
            if len(batch) == 1 and not wait:
                sock.sendall(hiredis.pack_command(batch[0].args))  # type: ignore[arg-type]
            else:
                sock.sendall(b"".join(hiredis.pack_command(a)
                                      for a in [*(c.args for c in batch), *wait]))
            for c in batch:
                reply = _reply(sock, reader)
                if isinstance(reply, redis.ResponseError):
                    c.error = (NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT")
                               else reply)
                else:
                    c.result = reply
            if wait:
                self._acknowledged(batch, sock, reader)
        except (OSError, hiredis.ProtocolError) as exc:
            for c in batch:
                if c.error is None and c.result is _PENDING:
                    c.error = Unknown(type(exc).__name__)
                elif c.error is None and wait:  # committed; whether replicas have it: unknown
                    c.error = NotAcknowledged(f"acknowledgement lost ({type(exc).__name__})")
            conn.disconnect()
            return
        self._used = now

    def _acknowledged(self, batch: list[_Call], sock: Any, reader: Any) -> None:
        """Read the batch's ``WAIT`` reply (Redis answers it once :attr:`min_acks` replicas
        have every write before it, or after the timeout with how many had): the socket may
        take that long on top of its own timeout. Fewer: every committed call of the batch
        gets :class:`NotAcknowledged`."""
        timeout = sock.gettimeout()
        if timeout is not None:
            sock.settimeout(timeout + self.ack_timeout)
        try:
            acked = _reply(sock, reader)
        finally:
            sock.settimeout(timeout)
        if isinstance(acked, int) and acked >= self.min_acks:
            return
        for c in batch:
            if c.error is None:
                c.error = NotAcknowledged(f"{acked} of {self.min_acks} replicas acknowledged "
                                          f"within {self.ack_timeout:g}s")


def _reply(sock: Any, reader: Any) -> Any:
    """The next reply on ``sock``, reading as much as it takes."""
    reply = reader.gets()
    while reply is False:
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed by Redis")
        reader.feed(data)
        reply = reader.gets()
    return reply


def _read_only(error: BaseException) -> bool:
    """Whether Redis refused a write because it is a replica: Redis 7 answers READONLY,
    6.2 quotes that reply in the script's error."""
    text = str(error)
    return text.startswith("READONLY") or "-READONLY " in text


def _closed(sock: Any) -> bool:
    """Whether the peer closed ``sock`` (it polls readable while no reply is owed)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))
