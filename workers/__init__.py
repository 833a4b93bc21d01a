"""Workers: replay buffers, collector, learner, evaluator and the serial pipeline."""
from workers.buffer import ReplayBuffer
from workers.collector import SerialCollector
from workers.evaluator import Evaluator
from workers.learner import Learner
from workers.pipeline import SerialPipeline, serial_pipeline

__all__ = ["Evaluator", "Learner", "ReplayBuffer", "SerialCollector", "SerialPipeline", "serial_pipeline"]
