"""Operators and sensors: one step of an experiment run each, through the hooks."""
