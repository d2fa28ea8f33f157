"""Chaos Mesh vocabulary: API constants, spec models and durations."""
