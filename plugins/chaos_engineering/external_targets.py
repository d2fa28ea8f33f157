"""Whether a NetworkChaos `externalTargets` entry could reach a protected service: its DNS names, hosts, IPs and CIDRs."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

from chaos_engineering.policy import ProtectedService, SafetyPolicy, Tier

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Rule ids of the issues below (static check) and of the run-time problems.
PROTECTED = "external-target-protected"
UNPROVABLE = "external-target-unprovable"

# Addresses that are not globally routable (IANA special-purpose registries). Pod and Service IPs
# are allocated from such ranges, and we know neither the cluster's ranges nor which pod holds
# which address: an entry that touches one cannot be proven outside every protected service.
_NOT_GLOBAL = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        # IPv6; the IPv4-mapped, NAT64 and 6to4 ranges can carry any IPv4 address inside them.
        "::/127", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
        "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
    )
]

# Kubernetes' own namespaces: `<service>.<namespace>` resolves inside the cluster.
_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?)*$")
# `<service>.<namespace>.svc`, under any cluster domain.
_IN_CLUSTER_SERVICE = re.compile(r"(^|\.)[^.]+\.[^.]+\.svc(\.|$)")
_PORT = re.compile(r"^(?P<host>[^:\[\]]+|\[(?P<v6>[0-9a-fA-F:.]+)\]):[0-9]{1,5}$")


def parse_entry(entry: str) -> Network | str | None:
    """An entry as Chaos Mesh reads it: a network (an IP is a /32 or /128), a host name in lower
    case without its trailing dot, or None when it is neither. A `:port` suffix is dropped."""
    text = entry.strip()
    match = _PORT.match(text)
    if match:
        text = match.group("v6") or match.group("host")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    return name if _HOST_NAME.match(name) and not re.fullmatch(r"[0-9.]+", name) else None


def in_cluster_names(name: str, service: ProtectedService) -> list[str]:
    """The names cluster DNS gives a service `name` (a Service named like the policy's service)."""
    namespace = service.namespace
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _host_networks(service: ProtectedService) -> list[Network]:
    networks = []
    for host in service.hosts:
        parsed = parse_entry(host)
        if parsed is not None and not isinstance(parsed, str):
            networks.append(parsed)
    return networks


def _forbidden(policy: SafetyPolicy, tier: Tier) -> list[tuple[str, ProtectedService]]:
    return [(name, service) for name, service in policy.protected_services.items() if service.level.forbids(tier)]


def _cluster_namespaces(policy: SafetyPolicy) -> set[str]:
    services = [*policy.protected_services.values(), *policy.services.values()]
    return {*policy.allowed_target_namespaces, policy.chaos_namespace, *_SYSTEM_NAMESPACES, *(s.namespace for s in services)}


def network_problems(policy: SafetyPolicy, tier: Tier, entry: str, network: Network) -> list[tuple[str, str]]:
    """(rule, message) for an address range: overlapping a forbidden protected service's address,
    or not globally routable (where pod and Service IPs live)."""
    problems = []
    for name, service in _forbidden(policy, tier):
        hit = [str(n) for n in _host_networks(service) if n.version == network.version and n.overlaps(network)]
        if hit:
            problems.append(
                (
                    PROTECTED,
                    f"externalTargets entry {entry!r} overlaps {', '.join(hit)}, an address of protected service "
                    f"{name!r} (level {service.level.value}, forbidden to the {tier.value} tier); remove the entry",
                )
            )
    private = [str(n) for n in _NOT_GLOBAL if n.version == network.version and n.overlaps(network)]
    if private:
        problems.append(
            (
                UNPROVABLE,
                f"externalTargets entry {entry!r} reaches the non-public range {private[0]}, where pod and Service IPs "
                "live, so it cannot be proven outside every protected service; name the external service by its "
                "public address, or select in-cluster peers with target.selector",
            )
        )
    return problems


def name_problems(policy: SafetyPolicy, tier: Tier, entry: str, name: str) -> list[tuple[str, str]]:
    """(rule, message) for a host name: a DNS name or host of a forbidden protected service (or a
    sub-domain of one), or any name cluster DNS resolves, whose address we cannot know here."""
    problems = []
    for service_name, service in _forbidden(policy, tier):
        names = in_cluster_names(service_name, service)
        hosts = [h.lower().rstrip(".") for h in service.hosts if isinstance(parse_entry(h), str)]
        hit = next((d for d in names + hosts if _under(name, d)), None)
        if hit is None and f".{service_name}.{service.namespace}.svc." in f".{name}.":
            hit = f"{service_name}.{service.namespace}.svc"  # the Service under any cluster domain
        if hit is not None:
            what = "host" if hit in hosts else "in-cluster DNS name"
            relation = "is the" if name == hit else "is under the"
            problems.append(
                (
                    PROTECTED,
                    f"externalTargets entry {entry!r} {relation} {what} {hit!r} of protected service {service_name!r} "
                    f"(level {service.level.value}, forbidden to the {tier.value} tier); remove the entry",
                )
            )
    if problems:
        return problems
    labels = name.split(".")
    in_cluster = (
        len(labels) == 1
        or labels[-1] == "svc"
        or _IN_CLUSTER_SERVICE.search(name) is not None
        or _under(name, "cluster.local")
        or _under(name, "local")
        or labels[-1] in _cluster_namespaces(policy)
    )
    if in_cluster:
        problems.append(
            (
                UNPROVABLE,
                f"externalTargets entry {entry!r} is resolved by the cluster's DNS (a Service or pod name), so its "
                "pods cannot be checked: select in-cluster peers with target.selector instead, or give a fully "
                "qualified public name",
            )
        )
    return problems


def entry_problems(policy: SafetyPolicy, tier: Tier, entry: str) -> list[tuple[str, str]]:
    """Every (rule, message) the static check finds in one externalTargets entry."""
    parsed = parse_entry(entry)
    if parsed is None:
        return [
            (
                UNPROVABLE,
                f"externalTargets entry {entry!r} is neither an IP, a CIDR nor a host name, so what it reaches "
                "cannot be checked; write an IP, a CIDR or a host name",
            )
        ]
    if isinstance(parsed, str):
        return name_problems(policy, tier, entry, parsed)
    return network_problems(policy, tier, entry, parsed)


def resolve_addresses(name: str) -> list[str]:
    """The addresses `name` resolves to from here (the Airflow worker); raises OSError when it does not."""
    return sorted({info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})


def run_time_problems(
    policy: SafetyPolicy, tier: Tier, entries: list[str], resolve: Callable[[str], list[str]] = resolve_addresses
) -> list[str]:
    """The static check again, and every host name resolved now: an address it resolves to must
    pass the address rules, and a name that does not resolve here fails closed."""
    problems = []
    for entry in entries:
        found = entry_problems(policy, tier, entry)
        problems += [message for _, message in found]
        parsed = parse_entry(entry)
        if found or not isinstance(parsed, str):
            continue
        try:
            addresses = resolve(parsed)
        except OSError as exc:
            problems.append(f"externalTargets entry {entry!r} does not resolve here ({exc}); its addresses cannot be checked")
            continue
        for address in addresses:
            network = ipaddress.ip_network(address.split("%", 1)[0])
            problems += [
                f"{message} (resolved to {address})" for _, message in network_problems(policy, tier, entry, network)
            ]
    return problems
