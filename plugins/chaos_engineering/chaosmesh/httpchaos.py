"""The `spec` of an HTTPChaos: abort, delay, replace or patch requests or responses on a pod's port."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import Field, Strict

from chaos_engineering.chaosmesh.scalars import Base64Text, GoDuration, Int32, NameValuePair
from chaos_engineering.chaosmesh.selectors import ChaosExperimentSpec, ChaosMeshModel
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child, shown


class HTTPTarget(str, enum.Enum):
    REQUEST = "Request"
    RESPONSE = "Response"


# Methods Chaos Mesh's webhook accepts in `method` when the target is Request (Go's net/http).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")


class PatchBody(ChaosMeshModel):
    # Chaos Mesh only supports a JSON merge patch (RFC 7396) here.
    type: Literal["JSON"]
    value: str


class HTTPPatch(ChaosMeshModel):
    body: PatchBody | None = None
    headers: list[NameValuePair] | None = None  # appended headers: [[name, value], ...]
    queries: list[NameValuePair] | None = None  # appended query parameters (Request only)


class HTTPReplace(ChaosMeshModel):
    body: Base64Text | None = None
    code: Int32 | None = None
    headers: dict[str, str] | None = None
    method: str | None = None
    path: str | None = None
    queries: dict[str, str] | None = None


class HTTPTLS(ChaosMeshModel):
    """Where the certificate of an HTTPS server is, so Chaos Mesh's proxy can speak TLS."""

    secretName: str
    secretNamespace: str
    certName: str
    keyName: str
    caName: str | None = None


class HTTPChaosSpec(ChaosExperimentSpec):
    target: Annotated[HTTPTarget, Strict(False)]
    # Not required by the CRD, but Chaos Mesh's webhook rejects a missing (zero) port.
    port: Annotated[Int32, Field(ge=1, le=65535)]
    # Rules that select the traffic:
    path: str | None = None
    method: str | None = None
    code: Int32 | None = None
    request_headers: dict[str, str] | None = None
    response_headers: dict[str, str] | None = None
    # Actions applied to it:
    abort: bool | None = None
    delay: GoDuration | None = None
    replace: HTTPReplace | None = None
    patch: HTTPPatch | None = None
    tls: HTTPTLS | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        issues = super().cross_field_issues(raw)
        # Ours, not the webhook's: with no action Chaos Mesh proxies the traffic unchanged, and
        # the run would report a fault that never happened.
        if not raw.get("abort") and all(raw.get(name) is None for name in ("delay", "replace", "patch")):
            issues.append(
                SpecIssue(
                    SPEC_ROOT,
                    Rule.ACTION_REQUIRES,
                    "HTTPChaos needs an action: set abort: true, delay, replace or patch.",
                )
            )
        method = raw.get("method")
        if raw.get("target") == HTTPTarget.REQUEST.value and isinstance(method, str) and method not in HTTP_METHODS:
            issues.append(
                SpecIssue(
                    child(SPEC_ROOT, "method"),
                    Rule.ENUM,
                    f"method {shown(method)} is not an HTTP method; use one of: {', '.join(HTTP_METHODS)}.",
                )
            )
        return issues
