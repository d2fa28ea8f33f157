"""The simulated booking platform: pods, load, faults, metrics."""

from sandbox.platform.platform import Platform, PodNotFound, PodNotServing

__all__ = ["Platform", "PodNotFound", "PodNotServing"]
