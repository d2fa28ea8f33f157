"""HTTP helpers shared by the hooks: an `http` connection's base URL, and total deadlines for urllib3 and requests."""

from __future__ import annotations

import functools
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool


def connection_base_url(conn: Any, example: str) -> str:
    """`host` is a URL (`http://prometheus:9090`) or a bare host completed by `schema` (default
    http) and `port`. A connection without a host is an error that names it and shows `example`."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host: set it to the service's URL, e.g. {example}")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and urlsplit(host).port is None:
        parts = urlsplit(host)
        host = parts._replace(netloc=f"{parts.netloc}:{conn.port}").geturl()
    return host


def without_credentials(url: str) -> str:
    """`url` as it may appear in a message or a log: no `user:password@`, no query string."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


# --- total deadlines for urllib3 ------------------------------------------------------------
#
# urllib3's timeouts (and so requests' and the Kubernetes client's) bound each socket operation,
# not the exchange: a server that sends one byte inside every read timeout holds a call forever
# (urllib3's own `Timeout` documentation says so). A `Deadline` shuts the sockets of the calls
# made under it down when it expires; the blocked read then returns at once and the call fails.

_ACTIVE: ContextVar[Deadline | None] = ContextVar("http_deadline", default=None)


class Deadline:
    """One total deadline for the urllib3 calls made inside `with deadline:` in this thread (or
    task), through a pool manager set up by `enforce_deadlines`: connect, request, headers and
    the whole body. `expired` says afterwards whether the deadline cut a call short."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"a deadline must be a positive number of seconds, not {seconds!r}")
        self.seconds = seconds
        self.expired = False
        self._ends = 0.0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._token: Any = None

    def remaining(self) -> float:
        """Seconds left (at least a millisecond: urllib3 refuses a zero timeout)."""
        return max(0.001, self._ends - time.monotonic())

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self._ends

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shut(sock)
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._timer is None:  # the block ended first
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)
        with self._lock:
            timer, self._timer = self._timer, None
            self._sockets.clear()
        if timer is not None:
            timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed: nothing left to cut
        pass


class _DeadlineMixin:
    sock: socket.socket | None

    def getresponse(self) -> Any:
        # Headers and (preloaded) body are read from here on: the socket is connected and ours.
        deadline = _ACTIVE.get()
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse()  # type: ignore[misc]


@functools.cache
def _watched(pool_class: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """`pool_class` whose connections obey the active `Deadline` (its own connection class kept:
    a proxy's or SOCKS pool still goes through its proxy)."""
    if issubclass(pool_class.ConnectionCls, _DeadlineMixin):
        return pool_class
    connection_class = type(f"Deadline{pool_class.ConnectionCls.__name__}", (_DeadlineMixin, pool_class.ConnectionCls), {})
    return type(f"Deadline{pool_class.__name__}", (pool_class,), {"ConnectionCls": connection_class})


def enforce_deadlines(pool_manager: PoolManager) -> PoolManager:
    """Make the connections of `pool_manager` (created from now on) obey the active `Deadline`;
    returns it. Calls made outside any `Deadline` keep urllib3's behaviour."""
    pool_manager.pool_classes_by_scheme = {scheme: _watched(cls) for scheme, cls in pool_manager.pool_classes_by_scheme.items()}
    return pool_manager


class DeadlineHTTPAdapter(HTTPAdapter):
    """A requests transport adapter whose connections, direct or through a proxy, obey the active
    `Deadline` (`enforce_deadlines` on each of its urllib3 pool managers)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        enforce_deadlines(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        return enforce_deadlines(super().proxy_manager_for(proxy, **proxy_kwargs))
