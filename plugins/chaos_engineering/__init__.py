"""The chaos-engineering package: catalogue, safety policy, Chaos Mesh rendering and the chaosctl command."""
