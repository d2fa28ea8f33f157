"""The single-experiment lock: a Kubernetes Lease, one holder across every DAG, worker and deployment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from chaos_engineering.hooks.chaos_mesh import ChaosMeshHook
from chaos_engineering.render import LABEL_MANAGED_BY, MANAGED_BY

LOCK_NAME = "chaos-experiment-lock"


class LockHeld(RuntimeError):
    """Another experiment holds the lock (or won the race for it)."""


@dataclass(frozen=True)
class LockState:
    holder: str
    acquired: dt.datetime | None
    renewed: dt.datetime | None
    duration_s: int
    resource_version: str

    def expires(self) -> dt.datetime | None:
        return self.renewed + dt.timedelta(seconds=self.duration_s) if self.renewed else None

    def expired(self, now: dt.datetime) -> bool:
        """A lease nobody renewed within its duration: its holder is presumed dead."""
        expires = self.expires()
        return expires is None or now >= expires


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _state(lease: V1Lease) -> LockState | None:
    spec = lease.spec
    if spec is None or not spec.holder_identity:
        return None
    return LockState(
        holder=spec.holder_identity,
        acquired=spec.acquire_time,
        renewed=spec.renew_time,
        duration_s=spec.lease_duration_seconds or 0,
        resource_version=lease.metadata.resource_version,
    )


class ExperimentLock:
    """Acquire is idempotent for the same holder (a retried task finds its own lock); every
    write is conditional on the version read, so two contenders never both win."""

    def __init__(self, hook: ChaosMeshHook, namespace: str, name: str = LOCK_NAME) -> None:
        self.hook = hook
        self.namespace = namespace
        self.name = name

    def state(self) -> LockState | None:
        lease = self.hook.get_lease(self.name, self.namespace)
        return _state(lease) if lease else None

    def _lease(self, holder: str, duration_s: int, acquired: dt.datetime, now: dt.datetime, version: str | None) -> V1Lease:
        return V1Lease(
            metadata=V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={LABEL_MANAGED_BY: MANAGED_BY},
                resource_version=version,
            ),
            spec=V1LeaseSpec(
                holder_identity=holder,
                lease_duration_seconds=int(duration_s),
                acquire_time=acquired,
                renew_time=now,
            ),
        )

    def acquire(self, holder: str, duration_s: int, now: dt.datetime | None = None) -> LockState:
        now = now or _now()
        lease = self.hook.get_lease(self.name, self.namespace)
        try:
            if lease is None:
                created = self.hook.create_lease(self._lease(holder, duration_s, now, now, None))
                return _state(created)
            current = _state(lease)
            if current is not None and current.holder != holder and not current.expired(now):
                raise LockHeld(f"lock {self.namespace}/{self.name} is held by {current.holder} until {current.expires():%Y-%m-%d %H:%M:%S} UTC")
            acquired = current.acquired if current is not None and current.holder == holder else now
            replaced = self.hook.replace_lease(
                self._lease(holder, duration_s, acquired or now, now, lease.metadata.resource_version)
            )
            return _state(replaced)
        except ApiException as exc:
            if exc.status == 409:
                raise LockHeld(f"lock {self.namespace}/{self.name} was taken by another run at the same moment") from exc
            raise

    def renew(self, holder: str, now: dt.datetime | None = None) -> bool:
        """Extend our lease; False when it is no longer ours (then nothing may inject)."""
        now = now or _now()
        lease = self.hook.get_lease(self.name, self.namespace)
        current = _state(lease) if lease else None
        if current is None or current.holder != holder:
            return False
        try:
            self.hook.replace_lease(self._lease(holder, current.duration_s, current.acquired or now, now, current.resource_version))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self, holder: str) -> bool:
        """Release only our own lock: a teardown of a run that never got it must not free
        another run's. True when a lease of ours was deleted."""
        return self._delete_while(lambda current: current is not None and current.holder == holder) is not None

    def release_expired(self, now: dt.datetime) -> LockState | None:
        """Maintenance: free the lock only while it is expired (a run that takes it over meanwhile
        keeps it); returns the stale holding released, or None."""
        return self._delete_while(lambda current: current is None or current.expired(now))

    def force_release(self) -> LockState | None:
        """Emergency stop: free the lock whoever holds it; returns who held it."""
        return self._delete_while(lambda current: True)

    def _delete_while(self, judge: Callable[[LockState | None], bool]) -> LockState | None:
        """Delete the Lease while `judge` holds of its holding as read (read again after a 409);
        returns the holding deleted, None when nothing was (no Lease, no holder, or judged not to)."""
        seen: list[LockState | None] = []

        def ours(lease: V1Lease) -> bool:
            seen.append(_state(lease))
            return judge(seen[-1])

        return seen[-1] if self.hook.delete_lease_while(self.name, self.namespace, ours) else None
