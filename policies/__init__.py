"""Policies: acting and learning rules (SAC, value-expansion SAC, Dreamer actor-critic)."""
from policies.base import Policy

__all__ = ["Policy"]
