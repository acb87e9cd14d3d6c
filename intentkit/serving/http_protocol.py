"""uvicorn's HTTP/1.1 protocol with a deadline on each request's head (issue 31: slow headers).

uvicorn bounds an idle keep-alive connection, and the app bounds a stalled body
(`--read-timeout`), but nothing bounds the head: a client sending one header byte every few
seconds holds its connection for ever (slowloris). Here every request head must be complete
within `head_timeout_s` of its first byte (of the connection, for the first request); otherwise
the connection is closed. No response is possible then: HTTP allows none before a request.

uvicorn takes any callable as its `http` protocol factory, so `protocol_factory(seconds)` is
passed as `http=`; a `functools.partial` of this module-level class pickles, as the
`--workers` processes need.
"""
import asyncio
import functools
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEAD_TIMEOUT_S = 10.0

log = logging.getLogger("uvicorn.error")


class HeadDeadlineProtocol(H11Protocol):
    """H11Protocol, closing a connection whose request head is not complete in time."""

    def __init__(self, *args, head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_timeout_s = head_timeout_s
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """The client is IDLE (in h11's terms) until a whole request head has arrived: arm the
        deadline then, cancel it once the head is in. Between keep-alive requests the deadline
        starts with the next request's first byte; the idle wait before it is uvicorn's
        keep-alive timeout."""
        if self.transport.is_closing():
            return
        awaiting_head = self.conn.their_state is h11.IDLE
        if awaiting_head and self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)
        elif not awaiting_head:
            self._cancel_head_deadline()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            log.warning("closed a connection from %s: its request head took over %g s",
                        self.client[0] if self.client else "?", self.head_timeout_s)
            self.transport.close()


def protocol_factory(head_timeout_s: float) -> functools.partial:
    """The `http=` argument of uvicorn: HeadDeadlineProtocol with this deadline."""
    return functools.partial(HeadDeadlineProtocol, head_timeout_s=head_timeout_s)
