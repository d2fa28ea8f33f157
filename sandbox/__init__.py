"""A laptop-sized stand-in for a Kubernetes cluster running the booking platform and Chaos Mesh."""
