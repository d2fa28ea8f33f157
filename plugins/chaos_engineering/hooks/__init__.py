"""Hooks: the only places that open connections (Prometheus, the Kubernetes API with Chaos Mesh)."""
