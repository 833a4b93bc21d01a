"""The application layer, on top of every other package: the ``worldmodels`` command line
(``cli``; a new command goes there), config files with presets and ``--set`` overrides
(``experiment``), ``compare`` with its variants, statistics and report, ``load_agent``
(``agent``) and evaluation videos (``video``). Nothing below imports it."""
