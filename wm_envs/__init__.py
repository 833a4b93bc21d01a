"""Environments: ``make_env`` and vector envs from an ``env`` config section (``make``), env
wrappers registered in ``ENV_REGISTRY`` (``wrappers``; a new wrapper goes there or in a plugin),
the termination rules of gymnasium tasks in ``TERMINATION_REGISTRY`` for imagined rollouts
(``termination``), and the DeepMind Control Suite as gymnasium envs (``dmc``)."""
