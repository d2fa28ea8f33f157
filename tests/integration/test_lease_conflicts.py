"""Writing and deleting Leases of ours (the lock, a heartbeat, an injection claim) against the sandbox's API server when it
answers 409: the Lease is read again and judged again, so one of ours is never left behind as if
it were someone else's, and one that became someone else's is never deleted."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from chaos_engineering.chaosmesh.constants import ChaosKind
from chaos_engineering.halt import HaltFlag
from chaos_engineering.heartbeat import Heartbeat
from chaos_engineering.injections import InjectionRecord
from chaos_engineering.hooks.chaos_mesh import LEASE_CONFLICT_ATTEMPTS, ChaosMeshHook
from chaos_engineering.lock import ExperimentLock
from tests.integration.chaos_support import NAMESPACE

LEASES = r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases/{name}"


class TakenOverHook(ChaosMeshHook):
    """The race for real: at delete number `at`, another run takes the lock over between our read
    and our delete, so the API server's own precondition refuses the delete (409)."""

    def __init__(self, at: int | None) -> None:
        super().__init__()
        self.at, self.deletes = at, 0

    def delete_lease(self, name: str, namespace: str, resource_version: str) -> bool:
        if self.deletes == self.at:
            ExperimentLock(ChaosMeshHook(), namespace, name=name).acquire("other/run", 60, now=_expired_by())
        self.deletes += 1
        return super().delete_lease(name, namespace, resource_version)


def _expired_by() -> dt.datetime:
    """A time at which a 60 s holding taken now is long over (the other run takes an expired lock)."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conflicts=st.integers(0, LEASE_CONFLICT_ATTEMPTS + 1), taken_at=st.none() | st.integers(0, LEASE_CONFLICT_ATTEMPTS))
@example(conflicts=LEASE_CONFLICT_ATTEMPTS - 1, taken_at=LEASE_CONFLICT_ATTEMPTS - 1)  # taken over at the last delete
@example(conflicts=LEASE_CONFLICT_ATTEMPTS, taken_at=None)  # every delete refused
def test_release_deletes_the_lock_exactly_while_it_is_ours(connections, sandbox, conflicts, taken_at):
    """`conflicts` deletes answered 409 by the API server, and maybe a takeover at delete `taken_at`:
    released when a delete of ours got through while the lock was ours; kept (False) once another
    run holds it; the 409 raised when every attempt was refused (never False: the lock is ours)."""
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    hook = TakenOverHook(taken_at)
    lock = ExperimentLock(hook, NAMESPACE, name=name)
    # Acquired an hour ago for an hour and a minute: ours now, expired when "other/run" tries at +1 h.
    lock.acquire("this/run", 3660, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    if conflicts:
        sandbox.api_faults.inject(LEASES.format(name=name), "error", verb="DELETE", status=409, reason="Conflict", times=conflicts)
    # The delete that would get through: the first one the fault rule lets pass.
    through = conflicts if conflicts < LEASE_CONFLICT_ATTEMPTS else None
    try:
        if taken_at is not None and taken_at < LEASE_CONFLICT_ATTEMPTS and (through is None or taken_at <= through):
            assert lock.release("this/run") is False
            assert lock.state().holder == "other/run"
        elif through is not None:
            assert lock.release("this/run") is True
            assert lock.state() is None
        else:
            with pytest.raises(ApiException) as refused:
                lock.release("this/run")
            assert refused.value.status == 409
            assert lock.state().holder == "this/run"
    finally:
        sandbox.api_faults.clear()
        ExperimentLock(ChaosMeshHook(), NAMESPACE, name=name).force_release()


def test_maintenance_keeps_a_lock_taken_over_between_its_read_and_its_delete(connections):
    name = f"test-lock-{uuid.uuid4().hex[:8]}"
    lock = ExperimentLock(TakenOverHook(at=0), NAMESPACE, name=name)
    lock.acquire("dead/run", 60, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    try:
        # Expired for "dead/run" now; "other/run" takes it at the delete, fresh at `now`.
        assert lock.release_expired(dt.datetime.now(dt.timezone.utc)) is None
        assert lock.state().holder == "other/run"
    finally:
        ExperimentLock(ChaosMeshHook(), NAMESPACE, name=name).force_release()


def test_a_heartbeat_whose_delete_is_refused_twice_is_deleted(connections, sandbox):
    heartbeat = Heartbeat(ChaosMeshHook(), ChaosKind.NETWORK_CHAOS, f"hb-{uuid.uuid4().hex[:8]}", NAMESPACE)
    heartbeat.renew("monitor", 1.0)
    rule = sandbox.api_faults.inject(LEASES.format(name=heartbeat.name), "error", verb="DELETE", status=409, reason="Conflict", times=2)
    try:
        assert heartbeat.delete() is True
        hits = {r["id"]: r["hits"] for r in sandbox.api_faults.list()}
    finally:
        sandbox.api_faults.clear()
    assert heartbeat.read() is None
    assert hits[rule["id"]] == 2


LEASE_COLLECTION = r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conflicts=st.integers(0, LEASE_CONFLICT_ATTEMPTS + 1), claimed_before=st.booleans())
def test_an_injection_is_claimed_once_and_never_on_a_false_conflict(connections, sandbox, conflicts, claimed_before):
    """Creates of the claim answered 409 with no claim there are tried again; a claim that is there
    refuses (None); refused every time with none there, the claim raises: nothing may inject."""
    record = InjectionRecord(ChaosMeshHook(), NAMESPACE, f"claim-{uuid.uuid4().hex[:8]}")
    claim = {"dag_id": "chaos_low_risk", "run_id": "manual__claim", "experiment": "cache-slow-quick", "digest": "d"}
    if claimed_before:
        assert record.claim(**claim) is not None
    if conflicts:
        sandbox.api_faults.inject(LEASE_COLLECTION, "error", verb="POST", status=409, reason="AlreadyExists", times=conflicts)
    try:
        if claimed_before:
            assert record.claim(**claim) is None
        elif conflicts < LEASE_CONFLICT_ATTEMPTS:
            assert record.claim(**claim).run_id == "manual__claim"
            assert record.read().run_id == "manual__claim"
        else:
            with pytest.raises(RuntimeError, match="answered 409 .* yet no record is there; nothing was injected"):
                record.claim(**claim)
            assert record.read() is None
    finally:
        sandbox.api_faults.clear()
        ChaosMeshHook().delete_lease_while(record.name, NAMESPACE, lambda lease: True)


def test_a_heartbeat_whose_writes_are_refused_is_written_after_reading_it_again(connections, sandbox):
    heartbeat = Heartbeat(ChaosMeshHook(), ChaosKind.NETWORK_CHAOS, f"hb-{uuid.uuid4().hex[:8]}", NAMESPACE)
    faults = sandbox.api_faults
    try:
        faults.inject(LEASE_COLLECTION, "error", verb="POST", status=409, reason="AlreadyExists", times=2)
        heartbeat.renew("inject", 5.0)  # created on the third try
        assert heartbeat.read().holder == "inject"
        faults.inject(LEASES.format(name=heartbeat.name), "error", verb="PUT", status=409, reason="Conflict", times=2)
        heartbeat.renew("monitor", 1.0)
        assert heartbeat.read().holder == "monitor"
        faults.inject(LEASES.format(name=heartbeat.name), "error", verb="PUT", status=409, reason="Conflict", times=LEASE_CONFLICT_ATTEMPTS)
        with pytest.raises(ApiException) as refused:
            heartbeat.renew("later", 1.0)
        assert refused.value.status == 409 and heartbeat.read().holder == "monitor"
    finally:
        faults.clear()
        heartbeat.delete()


def test_a_halt_whose_writes_are_refused_twice_is_written_with_both_records(connections, sandbox):
    """The emergency stop's flag goes through the same write (ChaosMeshHook.write_lease): refused,
    it is read again and its history rebuilt on what is there, nothing lost."""
    flag = HaltFlag(ChaosMeshHook(), NAMESPACE, name=f"test-halt-{uuid.uuid4().hex[:8]}")
    try:
        sandbox.api_faults.inject(LEASE_COLLECTION, "error", verb="POST", status=409, reason="AlreadyExists", times=2)
        assert flag.set("alice", "bookings failing").halted
        sandbox.api_faults.inject(LEASES.format(name=flag.name), "error", verb="PUT", status=409, reason="Conflict", times=2)
        assert not flag.clear("bob", "fixed").halted
        assert [event["action"] for event in flag.state().history] == ["halt", "resume"]
    finally:
        sandbox.api_faults.clear()
        ChaosMeshHook().delete_lease_while(flag.name, NAMESPACE, lambda lease: True)
