"""Workers: the training loop. Replay buffers (``buffer``), the serial collector, learner and
evaluator, the serial pipeline that drives them on the config's schedule (``pipeline``), the
pipeline's config defaults and resolution and the components it builds (``run_config``),
checkpoints (``checkpoint``) and run output (``logger``). A new buffer type registers in
``BUFFER_REGISTRY`` from ``buffer`` or a plugin."""
from workers.buffer import ReplayBuffer
from workers.collector import SerialCollector
from workers.evaluator import Evaluator
from workers.learner import Learner
from workers.pipeline import SerialPipeline, serial_pipeline

__all__ = ["Evaluator", "Learner", "ReplayBuffer", "SerialCollector", "SerialPipeline", "serial_pipeline"]
