"""Shared infrastructure that every layer may import (it imports only ``registry``): config
merging and ``ConfigError`` (``config``), tensor and device helpers (``utils``), the divergence
guard (``guards``), mixed precision (``precision``), the ``Component`` base that world models and
policies share (``component``), and the ``typing.Protocol`` types that cross package boundaries
(``protocols``). Code that a world model, a policy and a worker would all need goes here; code
that only one of them needs stays with it."""
