"""Which services a Chaos Mesh pod selector could reach, decided statically and conservatively."""

from __future__ import annotations

from typing import Any

from chaos_engineering.policy import Service


def selected_namespaces(selector: Any) -> list[str]:
    """The namespaces a selector names: the keys of `pods` when given (Chaos Mesh then selects
    exactly those pods and ignores the other fields), otherwise `namespaces`."""
    if selector.pods:
        return list(selector.pods)
    return list(selector.namespaces or [])


def _labels_exclude(selector: Any, labels: dict[str, str]) -> bool:
    """True when the selector's label conditions contradict labels every pod of a service carries."""
    for key, value in (selector.labelSelectors or {}).items():
        if key in labels and labels[key] != value:
            return True
    for expression in selector.expressionSelectors or []:
        operator, key, values = expression.operator, expression.key, set(expression.values or [])
        if key not in labels:
            continue  # a pod may carry more labels than the policy names: nothing provable
        if operator == "In" and labels[key] not in values:
            return True
        if operator == "NotIn" and labels[key] in values:
            return True
        if operator == "DoesNotExist":
            return True
    return False


def may_select(selector: Any, service: Service) -> bool:
    """False only when the selector provably cannot select a pod of `service`.

    Anything we cannot decide statically (annotations, fields, nodes, pod names inside the
    service's namespace) counts as a possible match: the run-time check lists the real pods.
    """
    if selector.pods:
        return service.namespace in selector.pods
    if selector.namespaces and service.namespace not in selector.namespaces:
        return False
    return not _labels_exclude(selector, service.labels)
