"""The base URL of an `http` connection, read the same way by every hook that speaks HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


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
