"""An emulated Kubernetes API server with Chaos Mesh semantics."""
