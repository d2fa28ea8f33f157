"""Local stand-ins for the notification channels: a Slack webhook receiver, an SMTP server, and
servers that accept a connection and never answer (the worst a channel can do to a caller)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

#: The path part of a webhook URL is the secret: tests assert it never reaches a log line.
WEBHOOK_PATH = "/services/T0CHAOS/B0NOTIFY/s3cr3tW3bh00kT0k3n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlackReceiver:
    """Answers webhook posts like Slack (`200 ok`, or `status`/`body` when told) and keeps them;
    each answer `delay_s` late (a slow Slack)."""

    def __init__(self, status: int = 200, body: bytes = b"ok") -> None:
        self.payloads: list[dict] = []
        self.paths: list[str] = []
        self.status, self.body = status, body
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.paths.append(self.path)
                receiver.payloads.append(json.loads(self.rfile.read(length) or b"{}"))
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.handler = Handler
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def connection(self) -> str:
        """The `slackwebhook` connection as an AIRFLOW_CONN_* value: the full URL as password."""
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})

    def start(self) -> None:
        """Listen on the receiver's port (again, after `stop`: what it kept is kept)."""
        if self.server is not None:
            return
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="slack-receiver", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close the port: posts are refused (connection refused) until `start`."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.server = self.thread = None

    def __enter__(self) -> SlackReceiver:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.delay_s = 0.0  # how late each message is acknowledged (a slow SMTP server)

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay_s)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1: every message received is in `messages` as (from, to, message)."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def messages(self) -> list[tuple[str, list[str], EmailMessage]]:
        return self.inbox.messages

    def connection(self, to: str = "sre@example.com, oncall@example.com") -> str:
        """An `smtp` connection: plain SMTP (no SSL, no STARTTLS), recipients in the extra `to`."""
        extra = {"disable_ssl": True, "disable_tls": True, "from_email": "chaos@example.com", "to": to}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})

    def start(self) -> None:
        """Listen on the server's port (again, after `stop`: the messages received are kept)."""
        if self.controller is not None:
            return
        # A stopped aiosmtpd controller has closed its loop: a new one each time.
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()

    def stop(self) -> None:
        """Close the port: connections are refused until `start`."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SilentServer:
    """Accepts TCP connections (the kernel completes them from the backlog) and never says a
    word: a hung webhook, SMTP server or Pushgateway. Every read of a client waits for its timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class S3Server:
    """moto's S3 API over HTTP, in this process, with one bucket. `stop()` takes it off the network
    (an outage) and `start()` brings it back on the same port with every object still there:
    moto keeps its state in the process, not in the server."""

    CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        if self._server is None:
            from moto.server import ThreadedMotoServer

            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
            self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, **self.CREDENTIALS)

    def connection(self) -> str:
        """An Airflow `aws` connection to this server (the form's login/password and endpoint)."""
        return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                           "extra": {"endpoint_url": self.url, "region_name": self.CREDENTIALS["region_name"]}})

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def __enter__(self) -> S3Server:
        self.start()
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
