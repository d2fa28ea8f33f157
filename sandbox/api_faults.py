"""ApiFaults: makes the sandbox's emulated Kubernetes API fail, hang or slow down, through its fault table."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from sandbox.kubeapi.faults import CONTROL_PATH


class ApiFaultError(RuntimeError):
    """The fault table refused a call (a bad rule answers 400, naming every field at fault), or
    did not answer."""


class ApiFaults:
    """The fault table of the API server at `kube_url` (sandbox/kubeapi/README.md, "API faults").

    Rules apply in the order they were injected; the first that matches a request decides. A
    rule's `path` is a regular expression the whole request path (no query string) must match.
    """

    def __init__(self, kube_url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        self.url = kube_url.rstrip("/") + CONTROL_PATH
        self.token = token
        self.timeout = timeout

    def inject(
        self,
        path: str,
        mode: str,
        *,
        verb: str = "*",
        status: int | None = None,
        seconds: float | None = None,
        times: int | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> dict:
        """Append one rule; returns it as stored (`id`, `hits`, and for an error its status and reason).

        mode `error` answers a Kubernetes Status with `status` (500 unless given) and its usual
        reason; `delay` serves the request after `seconds`; `hang` sends nothing for `seconds`
        and drops the request if its client gives up first; `lose-reply` serves the request at
        once (a write lands) and holds its answer for `seconds`, lost if its client gives up
        first (a create stored whose reply never came). `times`: how many matching requests it
        affects (None: every one until cleared).
        """
        rule = {"verb": verb, "path": path, "mode": mode, "times": times}
        optional = {"status": status, "seconds": seconds, "reason": reason, "message": message}
        return self._call("POST", self.url, rule | {key: value for key, value in optional.items() if value is not None})

    def list(self) -> list[dict]:
        """Every rule, spent ones too, each with the number of requests it `hits`."""
        return self._call("GET", self.url)["rules"]

    def remove(self, rule_id: int) -> dict:
        """Take one rule out; returns it with its final hit count."""
        return self._call("DELETE", f"{self.url}/{rule_id}")

    def clear(self) -> int:
        """Remove every rule and release every request still held; returns how many rules there were."""
        return self._call("DELETE", self.url)["cleared"]

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raw = error.read().decode(errors="replace")
            try:
                detail = json.loads(raw).get("message") or raw
            except (ValueError, AttributeError):
                detail = raw
            raise ApiFaultError(f"{method} {url}: HTTP {error.code}: {detail}") from None
        except OSError as error:
            raise ApiFaultError(f"{method} {url}: the sandbox API server did not answer: {error}") from error
