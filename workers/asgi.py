"""The request worker's server: gunicorn's ``asgi`` worker, with what its
HTTP/1 protocol (gunicorn 27) lacks against slow or lying clients.

- **Header timeout.** gunicorn arms its keepalive timer only from the second
  request on and has no timer for the request head: a socket that connects and
  sends nothing, or trickles its head, stays open as long as the client likes.
  Here the first head is due ``header-timeout`` seconds after connect. gunicorn
  runs its keepalive timer from the end of a response until the next head is
  complete, so capping keepalive at ``header-timeout`` gives every later head
  the same bound, with no timer of our own per request.
- **The first body message at once.** gunicorn hands the app its first
  ``http.request`` message only when body bytes arrive, and falcon awaits that
  message before routing: a request declaring a body it never sends
  (``Content-Length: 20000000000``) never reached the code that refuses it
  with 413. A request with a body now gets an empty first message at once
  (``more_body`` true, valid ASGI); the app then reads or refuses the body.
  With ``Expect: 100-continue`` this also means a refused body is never asked
  for.
- **A body that stalls or trickles is refused, not truncated.** gunicorn bounds
  each wait for body bytes by ``cfg.timeout`` (our ``timeout``), so a body that
  stops arriving ends there, but a byte now and then restarts the wait for
  ever. And it then tells the app ``http.disconnect``, which falcon reads as
  the end of the body: a script ran with the part that had arrived. Here a
  body must arrive within ``timeout`` seconds of the head plus one second per
  ``MIN_BODY_RATE`` bytes received (a slow but real upload keeps extending
  its deadline, a trickle does not; the stall bound is unchanged). A body that
  misses it closes the connection; a body cut by the client going away ends
  the request likewise. Either way the app's task is cancelled inside its
  ``receive()`` (as gunicorn itself does to a request whose client left), so
  no handler runs on a truncated body.

- **The kit's own header lines are not checked twice.** gunicorn matches
  every response header's name and value against its token and field-value
  patterns (two regular expressions per line, ~0.45 µs each line). The
  scripts front's usual answer carries three lines the kit built from values
  it knows are valid (``hoodyexec.http.scope.KitHeaders``: the execution id,
  a content type from a fixed table, the length); their framing is read from
  them directly. Every other header list (falcon's, a script's own headers or
  content type) goes through gunicorn's checks as before.

gunicorn has no hook for its protocol class: its worker builds
``ASGIProtocol(self)`` by module-level name, which the worker rebinds in its own
process (after fork) to ``HoodyProtocol``; the header check is rebound the same
way.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from gunicorn.asgi import protocol as gprotocol
from gunicorn.asgi.parser import CallbackRequest
from gunicorn.asgi.protocol import ASGIProtocol, BodyReceiver
from gunicorn.workers import gasgi
from gunicorn.workers.gasgi import ASGIWorker

from hoodyexec.http.scope import KitHeaders

if TYPE_CHECKING:
    from gunicorn.asgi.protocol import _BodyReceieverReceiveReturnType as BodyMessage

    from .master import HoodyApplication

_EMPTY_MORE: BodyMessage = {"type": "http.request", "body": b"", "more_body": True}

# Bytes per second a request body must average, after ``timeout`` seconds of grace.
MIN_BODY_RATE = 1024

# gunicorn's response header check: (has Content-Length, its value, has
# Transfer-Encoding), or an exception for an invalid line. Not in the stubs.
_gunicorn_scan: Callable[[Any], tuple[bool, Any, bool]] = gprotocol._scan_response_headers  # type: ignore[attr-defined]


def scan_response_headers(headers: Any) -> tuple[bool, Any, bool]:
    """gunicorn's check, except for ``KitHeaders`` (PERF: lines the kit built
    from values known to be valid: their framing, no pattern matched)."""
    if type(headers) is KitHeaders:
        return True, headers.content_length, False
    return _gunicorn_scan(headers)


class PromptBodyReceiver(BodyReceiver):
    """gunicorn's body receiver: the first ``receive()`` never waits for bytes,
    and a body that misses its deadline or is cut short never looks complete."""

    __slots__ = ("_prompted", "_deadline", "_received")
    # gunicorn 27 internals used here; the stubs type only the public API.
    protocol: HoodyProtocol
    _chunks: collections.deque[bytes]
    _complete: bool
    _disconnected: bool  # a read-only property
    _body_wait_expired: bool
    _waiter: asyncio.Future[None] | None

    def __init__(self, request: CallbackRequest, protocol: HoodyProtocol) -> None:
        super().__init__(request, protocol)
        self._prompted = False
        self._deadline = protocol.worker.loop.time() + (protocol.cfg.timeout or 30)
        self._received = 0

    async def receive(self) -> BodyMessage:
        if not self._prompted:
            self._prompted = True
            if not self._chunks and not self._complete and not self._disconnected:
                return _EMPTY_MORE.copy()
        message = await super().receive()
        if message["type"] == "http.request":
            self._received += len(message["body"])
        elif not self._complete:
            self._abandon()
        return message

    def _abandon(self) -> NoReturn:
        """The body will never be whole: close the connection and end the app's
        request instead of handing it a truncated body as if it were complete.

        No 408: the app may already be answering (falcon reads on while it
        streams server-sent events), and bytes written now could land inside
        that answer."""
        self.protocol._close_transport()
        raise asyncio.CancelledError("request body incomplete")

    async def _wait_for_data(self) -> None:
        """gunicorn's wait, also bounded by the body's deadline."""
        if self._chunks or self._complete or self._disconnected:
            return
        loop = self.protocol.worker.loop
        left = self._deadline + self._received / MIN_BODY_RATE - loop.time()
        wait = min(self.protocol.cfg.timeout or 30, left)
        if wait <= 0:
            self._body_wait_expired = True
            return
        self._waiter = loop.create_future()
        try:
            await asyncio.wait_for(self._waiter, wait)
        except TimeoutError:
            self._body_wait_expired = True
        finally:
            self._waiter = None


class HoodyProtocol(ASGIProtocol):
    """gunicorn's ASGI protocol with a header timeout and a prompt first body message."""

    # gunicorn 27 internals used here; the stubs type only the public API.
    worker: HoodyASGIWorker
    _keepalive: float
    _keepalive_handle: asyncio.TimerHandle | None
    _callback_parser: object | None
    _current_request: CallbackRequest
    _body_receiver: BodyReceiver | None
    _close_transport: Callable[[], None]
    _keepalive_timeout: Callable[[], None]
    _post_request: Callable[..., None] | None
    _handle_http_request: Callable[[Any, Any, Any], Awaitable[bool]]

    def __init__(self, worker: HoodyASGIWorker) -> None:
        super().__init__(worker)
        head = worker.header_timeout
        if head and self._keepalive:
            # gunicorn's keepalive timer runs from the end of a response until
            # the next head is complete: capped, it is that head's timeout.
            self._keepalive = min(self._keepalive, head)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        head = self.worker.header_timeout
        # HTTP/1 only (h2c sniffing, TLS h2 and uwsgi have no callback parser yet).
        if head and self._callback_parser is not None and self._keepalive_handle is None:
            # The first head: gunicorn cancels this handle like its keepalive
            # timer once a head is complete; when it fires, the connection closes.
            self._keepalive_handle = self.worker.loop.call_later(head, self._keepalive_timeout)

    async def _serve_http_request(self, request: Any, sockname: Any, peername: Any) -> bool:
        """PERF: the app is called in the connection's task, not in a task of
        its own per request. gunicorn starts a task (with a future and a
        done-callback) for every request so that an app may go on running
        after its response (Starlette's background tasks) while the next
        request on the connection is served; the kit's apps finish with their
        response, and the task, the future and the two extra turns of the
        event loop cost more than the trivial script itself (against lean
        Falcon in ``make bench``: 0.93x before, 1.01-1.05x after). What the
        task gave stays: a
        client that goes away still cancels the call (gunicorn cancels the
        connection's task), the keepalive answer is the same, and a
        ``post_request`` hook (the only one that needs the call's task) keeps
        gunicorn's way."""
        if self._post_request is not None:
            return await super()._serve_http_request(request, sockname, peername)  # type: ignore[misc,no-any-return]
        return await self._handle_http_request(request, sockname, peername)

    def _on_headers_complete(self) -> bool:
        skip: bool = super()._on_headers_complete()  # type: ignore[misc]  # not in the stubs
        request = self._current_request
        # PERF: requests without a body keep gunicorn's receiver as it is.
        if request.content_length or request.chunked:
            self._body_receiver = PromptBodyReceiver(request, self)
        return skip


class HoodyASGIWorker(ASGIWorker):
    """gunicorn's ``asgi`` worker serving ``HoodyProtocol``."""

    app: HoodyApplication
    loop: asyncio.AbstractEventLoop  # set in run(), before any connection is made

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = self.app.settings.header_timeout

    def init_process(self) -> None:
        # After fork, in this worker process only: gunicorn has no protocol-class hook.
        # The stubs do not list gasgi's import of ASGIProtocol.
        gasgi.ASGIProtocol = HoodyProtocol  # type: ignore[attr-defined]
        gprotocol._scan_response_headers = scan_response_headers  # type: ignore[attr-defined]
        super().init_process()

    # -- WebSockets on stop ------------------------------------------------------
    # gunicorn waits up to ``graceful_timeout`` for open connections before the
    # app's lifespan shutdown, and an open WebSocket never ends by itself: the
    # worker closes its sockets with 1001 as soon as it is told to stop, so
    # clients see a clean "going away" and reconnect to a new worker.
    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        self._websockets_going_away()

    async def _shutdown(self) -> None:
        # Also when the worker stops without a signal (its parent is gone).
        self._websockets_going_away()
        await super()._shutdown()  # type: ignore[misc]  # not in the stubs

    def _websockets_going_away(self) -> None:
        sockets = self.app.sockets
        if sockets is not None and sockets.open:
            count = sockets.going_away()
            self.log.info("Closing %d WebSocket(s) with 1001 (going away)", count)
