"""Policies: acting and learning rules: SAC (``sac``), value-expansion SAC (``mbsac``), the
Dreamer actor-critic (``dreamer``) and the planners CEM, iCEM and MPPI over any world model
(``planners``). A new built-in policy is a module here listed in ``builtin.py``; a third-party
one registers in ``POLICY_REGISTRY`` from its own package."""
from policies.base import Policy

__all__ = ["Policy"]
