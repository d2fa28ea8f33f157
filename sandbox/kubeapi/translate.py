"""Translation of an admitted Chaos Mesh spec and its selected pods into the platform's `Effect`."""

from __future__ import annotations

import shlex

from sandbox.kubeapi.units import go_duration_seconds, go_float, memory_size, rate_bytes_per_second
from sandbox.platform.effects import (
    ContainerKill,
    Effect,
    HTTPFault,
    IOFault,
    NetworkFault,
    PodFailure,
    PodKill,
    PodRef,
    StressFault,
)

# A percentage memory size ("50%") needs the pod's memory, which sandbox pods do not declare;
# this is the limit a booking-platform container would typically get.
POD_MEMORY_BYTES = 512 * 1024 * 1024


def _ms(duration: str | None) -> float:
    return go_duration_seconds(duration) * 1000.0 if duration else 0.0


def _percent(holder: dict | None, key: str) -> float:
    if not holder:
        return 0.0
    return min(max(go_float(holder[key]), 0.0), 100.0)


def to_effect(kind: str, spec: dict, pods: tuple[PodRef, ...], peers: tuple[PodRef, ...] | None) -> Effect:
    """`peers` are the NetworkChaos target pods (None when the spec has no target)."""
    return _BY_KIND[kind](spec, pods, peers)


def _pod_chaos(spec: dict, pods: tuple[PodRef, ...], _peers) -> Effect:
    action = spec["action"]
    if action == "pod-kill":
        return PodKill(pods, grace_period_s=int(spec.get("gracePeriod", 0)))
    if action == "pod-failure":
        return PodFailure(pods)
    return ContainerKill(pods, tuple(spec["containerNames"]))


def _network_chaos(spec: dict, pods: tuple[PodRef, ...], peers: tuple[PodRef, ...] | None) -> Effect:
    action = spec["action"]
    if peers is None and spec.get("externalTargets"):
        # Only targets outside the cluster: nothing inside the sandbox is on the other side.
        peers = ()
    common = {"pods": pods, "peers": peers, "direction": spec.get("direction", "to")}
    if action == "partition":
        return NetworkFault(**common, partition=True)
    delay = spec.get("delay") if action in ("delay", "netem") else None
    rate = None
    if action == "bandwidth":
        rate = rate_bytes_per_second(spec["bandwidth"]["rate"])
    elif action == "netem" and spec.get("rate"):
        rate = rate_bytes_per_second(spec["rate"]["rate"])

    def part(name: str) -> float:
        return _percent(spec.get(name), name) if action in (name, "netem") else 0.0

    return NetworkFault(
        **common,
        delay_ms=_ms(delay["latency"]) if delay else 0.0,
        jitter_ms=_ms(delay.get("jitter")) if delay else 0.0,
        loss_pct=part("loss"),
        duplicate_pct=part("duplicate"),
        corrupt_pct=part("corrupt"),
        # Chaos Mesh's rates are bytes per second; the platform shapes in bits per second.
        bandwidth_bps=float(rate * 8) if rate is not None else None,
    )


def _stress_chaos(spec: dict, pods: tuple[PodRef, ...], _peers) -> Effect:
    stressors = spec.get("stressors") or {}
    cpu, memory = stressors.get("cpu"), stressors.get("memory")
    cpu_load = 0.0
    memory_bytes = 0
    if cpu:
        # stress-ng's --cpu-load is per worker and defaults to full load.
        cpu_load = cpu["workers"] * cpu.get("load", 100)
    if memory:
        memory_bytes = memory["workers"] * _memory_bytes(memory.get("size") or "100%")
    if spec.get("stressngStressors"):
        extra_cpu, extra_memory = _stress_ng(spec["stressngStressors"])
        cpu_load += extra_cpu
        memory_bytes += extra_memory
    return StressFault(pods, cpu_load_pct=float(cpu_load), memory_bytes=int(memory_bytes))


def _memory_bytes(size: str) -> int:
    absolute, percent = memory_size(size)
    return absolute if absolute is not None else POD_MEMORY_BYTES * percent // 100


def _stress_ng(arguments: str) -> tuple[float, int]:
    """The CPU and memory part of a stress-ng command line (--cpu, --cpu-load, --vm, --vm-bytes)."""
    options: dict[str, str] = {}
    words = shlex.split(arguments)
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, _, inline = word[2:].partition("=")
            following = words[i + 1] if i + 1 < len(words) else ""
            options[name] = inline or ("" if following.startswith("--") else following)
    try:
        cpu = int(options.get("cpu", "0") or 0) * int(options.get("cpu-load", "100") or 100)
        vm = int(options.get("vm", "0") or 0) * _memory_bytes(options.get("vm-bytes") or "100%")
    except ValueError:
        return 0.0, 0
    return float(cpu), vm


def _io_chaos(spec: dict, pods: tuple[PodRef, ...], _peers) -> Effect:
    action = spec["action"]
    percent = float(spec.get("percent", 100))
    if action == "latency":
        return IOFault(pods, delay_ms=_ms(spec["delay"]))
    # fault (errno), mistake (corrupted data) and attrOverride (e.g. permissions) all make the
    # affected share of operations fail for the service on top of the volume.
    return IOFault(pods, error_pct=percent)


def _http_chaos(spec: dict, pods: tuple[PodRef, ...], _peers) -> Effect:
    replace = spec.get("replace") or {}
    return HTTPFault(
        pods,
        target=spec["target"],
        routes=(spec["path"],) if spec.get("path") else ("*",),
        methods=(spec["method"],) if spec.get("method") else None,
        abort=bool(spec.get("abort")),
        delay_ms=_ms(spec.get("delay")),
        replace_code=replace.get("code"),
        patched=bool(spec.get("patch")) or any(k != "code" for k in replace),
    )


_BY_KIND = {
    "PodChaos": _pod_chaos,
    "NetworkChaos": _network_chaos,
    "StressChaos": _stress_chaos,
    "IOChaos": _io_chaos,
    "HTTPChaos": _http_chaos,
}
