"""What each service does with a request: its own work and the calls it makes, in order.

The booking path is web-frontend -> booking-api -> (cache, database, payment-processor)
-> booking-confirmation. Confirmation hands the SMS and e-mail to the notification services
asynchronously (a queue in a real system), so slow or failing notifications never fail a
booking; they only show in those services' own metrics. payment-processor notifies
stripe-webhook-handler the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from sandbox.platform.mesh import Mesh, Reply, Route

if TYPE_CHECKING:
    from sandbox.platform.pods import SimPod

CACHE_HIT_RATIO = 0.9
# Cards the bank declines: payments that fail with no fault at all.
DECLINE_RATE = 0.01
SMS_OPT_IN = 0.6
# The database driver reconnects with these pauses while there is no primary (failover).
DRIVER_BACKOFF_S = (0.25, 0.5, 1.0)

ROUTES: dict[tuple[str, str], Route] = {}
Handler = Callable[[Mesh, "SimPod"], tuple[int, float]]


def route(service: str, path: str, method: str, request_bytes: int, response_bytes: int,
          error_rate: float = 4e-5) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES[(service, path)] = Route(service, path, method, request_bytes, response_bytes, handler, error_rate)
        return handler

    return register


def _health(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    return 200, mesh.work(pod, 0.0005, 0.3)


SERVICES_WITH_HEALTH = (
    "web-frontend", "booking-api", "booking-worker", "cache", "database", "payment-processor",
    "stripe-webhook-handler", "booking-confirmation", "sms-notifications", "email-service",
)
for _service in SERVICES_WITH_HEALTH:
    route(_service, "/healthz", "GET", 150, 100, error_rate=0.0)(_health)


def upstream_failure(reply: Reply) -> int:
    """The code a proxy answers when its upstream did not answer well."""
    if reply.failure == "timeout":
        return 504
    if reply.failure in ("unavailable", "unreachable"):
        return 503
    if reply.failure in ("refused", "reset"):
        return 502
    return reply.code


# -- web-frontend ------------------------------------------------------------------------

@route("web-frontend", "/", "GET", 600, 40_000)
def page_view(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.004)
    slots = mesh.call(pod, "booking-api", "/availability", timeout=3.0, attempts=2, retry_5xx=True)
    seconds += slots.seconds + mesh.work(pod, 0.002)
    return (200 if slots.ok else upstream_failure(slots)), seconds


@route("web-frontend", "/bookings", "POST", 2_000, 3_000)
def submit_booking(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.005)
    # A booking is not idempotent: only a connection refused or not made is retried on another replica.
    booking = mesh.call(pod, "booking-api", "/bookings", timeout=5.0, attempts=2)
    seconds += booking.seconds + mesh.work(pod, 0.001)
    return (200 if booking.ok else upstream_failure(booking)), seconds


# -- booking-api -------------------------------------------------------------------------

def _read_slots(mesh: Mesh, pod: SimPod) -> Reply:
    """Slots come from the cache; a miss or a cache failure reads through to the database."""
    cached = mesh.call(pod, "cache", "/get", timeout=0.2)
    if cached.code == 200:
        return cached
    stored = mesh.call(pod, "database", "/query", timeout=2.0, attempts=2, retry_5xx=True)
    return Reply(stored.code, cached.seconds + stored.seconds, stored.failure)


@route("booking-api", "/availability", "GET", 500, 6_000)
def availability(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.003)
    slots = _read_slots(mesh, pod)
    seconds += slots.seconds
    return (200 if slots.ok else upstream_failure(slots)), seconds


@route("booking-api", "/bookings", "POST", 2_000, 2_000)
def create_booking(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.008)
    for step in (
        lambda: _read_slots(mesh, pod),
        lambda: mesh.call(pod, "payment-processor", "/payments", timeout=3.0, attempts=2),
        lambda: database_write(mesh, pod, timeout=2.0),
        lambda: mesh.call(pod, "booking-confirmation", "/confirmations", timeout=2.0, attempts=2),
    ):
        reply = step()
        seconds += reply.seconds
        if not reply.ok:
            mesh.platform.count_booking(pod, "failed")
            # A declined card is the customer's 402, anything else the platform's failure.
            return (402 if reply.code == 402 else _booking_failure(reply)), seconds
    # Best effort: a stale slot in the cache expires by itself.
    seconds += mesh.call(pod, "cache", "/set", timeout=0.2).seconds + mesh.work(pod, 0.003)
    mesh.platform.count_booking(pod, "confirmed")
    return 200, seconds


def _booking_failure(reply: Reply) -> int:
    code = upstream_failure(reply)
    return code if code >= 500 else 502


# -- cache and database -------------------------------------------------------------------

@route("cache", "/get", "GET", 200, 4_000)
def cache_get(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.0004, 0.3)
    return (200 if mesh.rng.random() < CACHE_HIT_RATIO else 404), seconds


@route("cache", "/set", "POST", 4_000, 100)
def cache_set(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    return 200, mesh.work(pod, 0.0005, 0.3)


def _disk(mesh: Mesh, pod: SimPod, operations: float, base_s: float) -> tuple[bool, float]:
    """IO of one query: `operations` reads or fsyncs on average, each slowed or failed by IOChaos."""
    delay, error = mesh.faults.io(pod.ref) if mesh.faults.effects else (0.0, 0.0)
    count = int(operations) + (1 if mesh.rng.random() < operations % 1 else 0)
    seconds = 0.0
    for _ in range(count):
        seconds += base_s + delay
        if error and mesh.rng.random() < error:
            return False, seconds
    return True, seconds


@route("database", "/query", "GET", 500, 8_000)
def query(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.0015, 0.6)
    # Most reads are served from the buffer cache; about one in three touches the disk.
    ok, io = _disk(mesh, pod, 0.3, 0.0005)
    return (200 if ok else 500), seconds + io


@route("database", "/write", "POST", 2_000, 200)
def write(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.002, 0.5)
    # A commit waits for one WAL fsync.
    ok, io = _disk(mesh, pod, 1.0, 0.001)
    return (200 if ok else 500), seconds + io


def database_write(mesh: Mesh, caller: SimPod, timeout: float) -> Reply:
    """Writes go to the primary; during a failover the driver retries until one is promoted."""
    wait, primary = mesh.platform.primary_outlook()
    if primary is None:
        return Reply(503, 0.001, "unavailable")
    if wait <= 0:
        return mesh.call(caller, "database", "/write", timeout=timeout, pod=primary)
    spent = 0.0
    for pause in DRIVER_BACKOFF_S:
        spent += pause
        if spent >= wait:
            reply = mesh.attempt(caller, primary, "/write", timeout, assume_up=True)
            return Reply(reply.code, spent + reply.seconds, reply.failure)
    return Reply(503, spent, "unavailable")


# -- payments ----------------------------------------------------------------------------

@route("payment-processor", "/payments", "POST", 1_000, 1_000)
def charge(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.005)
    stripe = mesh.external(pod, 0.16, 0.35, timeout=2.5, request_bytes=1_500, response_bytes=2_000)
    seconds += stripe.seconds
    if not stripe.ok:
        mesh.platform.count_payment(pod, "failed")
        return upstream_failure(stripe), seconds
    if mesh.platform.declines.happens():
        mesh.platform.count_payment(pod, "failed")
        return 402, seconds
    # A charge that cannot be recorded is voided: the payment fails.
    record = database_write(mesh, pod, timeout=1.5)
    seconds += record.seconds
    if not record.ok:
        mesh.platform.count_payment(pod, "failed")
        return 503, seconds
    mesh.platform.count_payment(pod, "succeeded")
    mesh.call(pod, "stripe-webhook-handler", "/webhooks/stripe", timeout=5.0, attempts=2)
    return 200, seconds + mesh.work(pod, 0.001)


@route("stripe-webhook-handler", "/webhooks/stripe", "POST", 3_000, 100)
def webhook(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.002)
    record = database_write(mesh, pod, timeout=2.0)
    return (200 if record.ok else 500), seconds + record.seconds


# -- notifications -----------------------------------------------------------------------

@route("booking-confirmation", "/confirmations", "POST", 2_000, 1_000)
def confirm(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.006)
    # Queued: the answer does not wait for the notifications, and their failures are retried
    # by the queue, not by the booking.
    mesh.call(pod, "email-service", "/send", timeout=5.0, attempts=2)
    if mesh.rng.random() < SMS_OPT_IN:
        mesh.call(pod, "sms-notifications", "/send", timeout=5.0, attempts=2)
    return 200, seconds


@route("email-service", "/send", "POST", 20_000, 200)
def send_email(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.003)
    smtp = mesh.external(pod, 0.06, 0.4, timeout=5.0, request_bytes=20_000, response_bytes=300)
    return (200 if smtp.ok else upstream_failure(smtp)), seconds + smtp.seconds


@route("sms-notifications", "/send", "POST", 500, 200)
def send_sms(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    seconds = mesh.work(pod, 0.002)
    provider = mesh.external(pod, 0.12, 0.4, timeout=5.0, request_bytes=600, response_bytes=400)
    return (200 if provider.ok else upstream_failure(provider)), seconds + provider.seconds


# -- background jobs ---------------------------------------------------------------------

@route("booking-worker", "/jobs/reminder", "POST", 500, 100)
def reminder(mesh: Mesh, pod: SimPod) -> tuple[int, float]:
    """A reminder job taken from the queue: look the booking up, then mail (and text) the customer."""
    seconds = mesh.work(pod, 0.004)
    booking = _read_slots(mesh, pod)
    seconds += booking.seconds
    if not booking.ok:
        return 500, seconds
    mail = mesh.call(pod, "email-service", "/send", timeout=5.0, attempts=2, retry_5xx=True)
    seconds += mail.seconds
    if mesh.rng.random() < SMS_OPT_IN / 2:
        seconds += mesh.call(pod, "sms-notifications", "/send", timeout=5.0, attempts=2, retry_5xx=True).seconds
    return (200 if mail.ok else 500), seconds
