"""The files the sandbox writes for its clients: prometheus.yml and an ordinary kubeconfig."""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = "sandbox"
# The emulated API server accepts any bearer token; a kubeconfig still needs a user.
DUMMY_TOKEN = "sandbox-token"
# Where the sandbox server writes Prometheus' file_sd targets, relative to the state directory.
TARGETS_FILE = Path("targets") / "booking-platform.json"


def prometheus_config(state_dir: Path, *, interval: str, metrics_port: int, pushgateway_port: int,
                      rule_files: list[Path]) -> dict:
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            # Prometheus refuses a timeout longer than the interval.
            "scrape_timeout": interval,
            "external_labels": {"environment": "sandbox"},
        },
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "booking-platform",
                "file_sd_configs": [{"files": [str(state_dir / TARGETS_FILE)], "refresh_interval": "5s"}],
            },
            {
                "job_name": "kube-state-metrics",
                "metrics_path": "/kube-state-metrics/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            },
            {
                "job_name": "pushgateway",
                # Pushed series keep their own job/instance labels (the chaos metrics' job).
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{pushgateway_port}"]}],
            },
        ],
    }


def kubeconfig(kube_url: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": kube_url}}],
        "users": [{"name": CONTEXT, "user": {"token": DUMMY_TOKEN}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}],
        "current-context": CONTEXT,
    }


def write_yaml(path: Path, document: dict) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    partial.replace(path)
