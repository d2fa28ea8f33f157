"""The active faults, indexed the way a request needs them: by link, by pod and by route."""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from dataclasses import dataclass

from sandbox.platform.effects import Effect, HTTPFault, IOFault, NetworkFault, PodRef, StressFault


@dataclass(frozen=True)
class Link:
    """The combined impairment of every network fault on one direction of one pod-to-pod path."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    bandwidth_bps: float | None = None
    # Which token bucket the bandwidth limit belongs to (fault, sending pod): its queue is
    # shared by everything that pod sends through that fault.
    shaper: tuple[str, PodRef | None] | None = None
    partition: bool = False


@dataclass(frozen=True)
class _Rule:
    fault_id: str
    senders: frozenset[PodRef] | None  # None: any sender, including clients outside the cluster
    receivers: frozenset[PodRef] | None
    fault: NetworkFault

    def matches(self, sender: PodRef | None, receiver: PodRef | None) -> bool:
        return (self.senders is None or sender in self.senders) and (
            self.receivers is None or receiver in self.receivers
        )


class FaultBook:
    def __init__(self) -> None:
        self.effects: dict[str, Effect] = {}
        self._rules: list[_Rule] = []
        self._stress: dict[PodRef, list[tuple[str, StressFault]]] = defaultdict(list)
        self._io: dict[PodRef, list[IOFault]] = defaultdict(list)
        self._http: dict[PodRef, list[HTTPFault]] = defaultdict(list)
        self._links: dict[tuple[PodRef | None, PodRef | None], Link | None] = {}
        self._routes: dict[tuple[PodRef, str, str], tuple[HTTPFault, ...]] = {}

    def add(self, fault_id: str, effect: Effect) -> None:
        self.effects[fault_id] = effect
        self._reindex()

    def remove(self, fault_id: str) -> Effect | None:
        effect = self.effects.pop(fault_id, None)
        self._reindex()
        return effect

    def _reindex(self) -> None:
        self._rules.clear()
        self._stress.clear()
        self._io.clear()
        self._http.clear()
        self._links.clear()
        self._routes.clear()
        for fault_id, effect in self.effects.items():
            if isinstance(effect, NetworkFault):
                self._rules.extend(_rules(fault_id, effect))
            elif isinstance(effect, StressFault):
                for pod in effect.pods:
                    self._stress[pod].append((fault_id, effect))
            elif isinstance(effect, IOFault):
                for pod in effect.pods:
                    self._io[pod].append(effect)
            elif isinstance(effect, HTTPFault):
                for pod in effect.pods:
                    self._http[pod].append(effect)

    def link(self, sender: PodRef | None, receiver: PodRef | None) -> Link | None:
        """None when the path is clean (the common case, so it is cached)."""
        key = (sender, receiver)
        try:
            return self._links[key]
        except KeyError:
            pass
        rules = [rule for rule in self._rules if rule.matches(sender, receiver)]
        link = _combine(rules, sender) if rules else None
        self._links[key] = link
        return link

    def stress(self, pod: PodRef, spent: set[str]) -> tuple[float, int, list[str]]:
        """CPU load (share of the pod's limit), memory bytes, and the faults that stress memory."""
        cpu, memory, memory_faults = 0.0, 0, []
        for fault_id, fault in self._stress.get(pod, ()):
            if fault_id in spent:
                continue
            cpu += fault.cpu_load_pct / 100.0
            if fault.memory_bytes:
                memory += fault.memory_bytes
                memory_faults.append(fault_id)
        return cpu, memory, memory_faults

    def io(self, pod: PodRef) -> tuple[float, float]:
        """Added seconds per IO operation and the probability one fails."""
        delay, survive = 0.0, 1.0
        for fault in self._io.get(pod, ()):
            delay += fault.delay_ms / 1000.0
            survive *= 1.0 - min(max(fault.error_pct, 0.0), 100.0) / 100.0
        return delay, 1.0 - survive

    def http(self, pod: PodRef, route: str, method: str) -> tuple[HTTPFault, ...]:
        key = (pod, route, method)
        try:
            return self._routes[key]
        except KeyError:
            pass
        faults = tuple(
            fault
            for fault in self._http.get(pod, ())
            if any(fnmatch.fnmatchcase(route, pattern) for pattern in fault.routes)
            and (not fault.methods or method.upper() in {m.upper() for m in fault.methods})
        )
        self._routes[key] = faults
        return faults


def _rules(fault_id: str, fault: NetworkFault) -> list[_Rule]:
    # Chaos Mesh's direction: "to" impairs what the selected pods send to the target pods,
    # "from" what the targets send to them; without a target, every peer (and the outside).
    pods = frozenset(fault.pods)
    peers = frozenset(fault.peers) if fault.peers is not None else None
    rules = []
    if fault.direction in ("to", "both"):
        rules.append(_Rule(fault_id, pods, peers, fault))
    if fault.direction in ("from", "both"):
        rules.append(_Rule(fault_id, peers, pods, fault))
    return rules


def _combine(rules: list[_Rule], sender: PodRef | None) -> Link:
    delay = jitter2 = 0.0
    survive = 1.0
    bandwidth, shaper, partition = None, None, False
    for rule in rules:
        fault = rule.fault
        delay += fault.delay_ms / 1000.0
        jitter2 += (fault.jitter_ms / 1000.0) ** 2
        # A corrupted segment fails its checksum and is dropped: to TCP it is a loss.
        for pct in (fault.loss_pct, fault.corrupt_pct):
            survive *= 1.0 - min(max(pct, 0.0), 100.0) / 100.0
        partition = partition or fault.partition
        if fault.bandwidth_bps and (bandwidth is None or fault.bandwidth_bps < bandwidth):
            bandwidth, shaper = fault.bandwidth_bps, (rule.fault_id, sender)
    return Link(
        delay_s=delay,
        jitter_s=math.sqrt(jitter2),
        loss=1.0 - survive,
        bandwidth_bps=bandwidth,
        shaper=shaper,
        partition=partition,
    )
