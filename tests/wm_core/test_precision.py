"""``precision``: bf16 autocast runs the matmuls in bf16 (the numbers change a little) while the
states, distributions and losses stay float32; bad values are refused by name."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from tests.worldmodels.test_dreamerv3 import TINY, VectorSpec, random_buffer
from wm_app.experiment import compose_config
from wm_core.config import ConfigError
from wm_core.precision import autocast, check_precision
from workers.run_config import AUTO_THREADS_CAP, resolve_threads


class BoxSpec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def dreamer_pair(precision):
    model = WORLD_MODEL_REGISTRY.build({**TINY, "precision": precision, "rollout_length_scheduler":
                                        {"type": "constant", "rollout_length": 4}}, VectorSpec(), None, seed=0)
    policy = POLICY_REGISTRY.build({"type": "dreamer", "precision": precision}, VectorSpec(),
                                   world_model=model, seed=0)
    return model, policy


def test_bad_precision_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"world_model.precision must be one of fp32, bf16, auto, got 'bf8'"):
        WORLD_MODEL_REGISTRY.build({**TINY, "precision": "bf8"}, VectorSpec(), None, seed=0)
    with pytest.raises(ConfigError, match=r"policy.precision must be one of fp32, bf16, auto, got 'fp16'"):
        check_precision("fp16", torch.device("cpu"), "policy")


def test_a_type_that_does_not_run_in_bf16_refuses_it_by_name():
    from tests.conftest import ToyDyna

    class Fp32Only(ToyDyna):
        supported_precisions = ("fp32",)

    with pytest.raises(ConfigError, match=r"world_model.precision 'bf16' is not supported by world model "
                                          r"'fp32_only' \(valid: fp32\)"):
        Fp32Only({"type": "fp32_only", "precision": "bf16"}, BoxSpec())
    assert Fp32Only({"type": "fp32_only"}, BoxSpec()).precision == "fp32"


def test_auto_is_bf16_only_where_the_device_runs_it_natively_and_the_type_supports_it(monkeypatch):
    import wm_core.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert check_precision("auto", cpu, "policy") == "bf16"
    assert check_precision("auto", cpu, "policy", ("fp32",)) == "fp32"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert check_precision("auto", cpu, "policy") == "fp32"


def test_fp32_is_no_autocast_and_bf16_runs_matmuls_in_bf16():
    x = torch.randn(4, 8)
    layer = torch.nn.Linear(8, 8)
    with autocast("fp32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert layer(x).dtype == torch.bfloat16


def test_dreamer_bf16_losses_are_float32_and_close_to_fp32_but_not_equal():
    batch = random_buffer(VectorSpec()).sample_sequences(3, 8, device=torch.device("cpu"))
    losses = {}
    for precision in ("fp32", "bf16"):
        model, policy = dreamer_pair(precision)
        with model.autocast():
            loss, metrics, observed = model.loss(batch)
        assert loss.dtype == torch.float32
        assert observed.deter.dtype == observed.stoch.dtype == torch.float32  # states stay float32
        assert observed.post_log_probs.dtype == torch.float32
        losses[precision] = loss.item()
        model.train_step(batch)
        learned = policy.learn(model.imagination_starts())
        assert all(np.isfinite(v) for v in learned.values())
        assert policy.actor.net[0].weight.dtype == torch.float32  # master weights stay float32
    assert losses["bf16"] != losses["fp32"]  # the matmuls really ran in bf16
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_dreamer_imagined_states_take_the_autocast_dtype():
    """Under bf16 autocast the rollout keeps its states in bf16 (each consumer would otherwise
    cast the same float32 states again); in fp32 they stay float32. Rewards and dones, which
    feed the returns, are float32 either way."""
    batch = random_buffer(VectorSpec()).sample_sequences(3, 8, device=torch.device("cpu"))
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, policy = dreamer_pair(precision)
        model.train_step(batch)
        data = model.imagination_starts()
        with policy.autocast():
            states, actions, rewards, dones, _ = policy.imagine(model, data.features, data.envstep)
        assert states.dtype == dtype and data.features.dtype == torch.float32
        assert rewards.dtype == dones.dtype == torch.float32


def test_sac_bf16_update_is_close_to_fp32():
    rng = np.random.default_rng(0)
    batch = {"obs": torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32),
             "action": torch.tensor(rng.uniform(-2, 2, (64, 1)), dtype=torch.float32),
             "reward": torch.tensor(rng.normal(size=64), dtype=torch.float32),
             "next_obs": torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32),
             "terminated": torch.zeros(64)}
    results = {}
    for precision in ("fp32", "bf16"):
        policy = POLICY_REGISTRY.build({"type": "sac", "hidden_sizes": [64, 64], "precision": precision},
                                       BoxSpec(), seed=0)
        results[precision] = policy.learn(batch)
    assert results["bf16"]["critic_loss"] != results["fp32"]["critic_loss"]
    for key in ("critic_loss", "q_target_mean", "entropy"):
        assert results["bf16"][key] == pytest.approx(results["fp32"][key], rel=0.03, abs=1e-3)


def test_mbpo_bf16_fits_the_model_as_well_as_fp32():
    from tests.worldmodels.test_mbpo import build_model, pendulum_buffer

    buffer = pendulum_buffer(400)
    scores = {}
    for precision in ("fp32", "bf16"):
        model = build_model(precision=precision)
        metrics = model.train(buffer, 400, 0)
        scores[precision] = metrics["holdout_mse"]
        mean, logvar, _ = model.ensemble.forward_normalized(torch.zeros(5, model.ensemble.in_dim))
        assert mean.dtype == logvar.dtype == torch.float32
    assert scores["bf16"] != scores["fp32"]
    assert scores["bf16"] == pytest.approx(scores["fp32"], rel=0.25)


def test_num_threads_auto_uses_the_usable_cores_and_an_int_is_kept(monkeypatch):
    cores = len(__import__("os").sched_getaffinity(0))
    monkeypatch.delenv("WORLDMODELS_MAX_THREADS", raising=False)
    assert resolve_threads("auto") == min(cores, AUTO_THREADS_CAP)
    monkeypatch.setenv("WORLDMODELS_MAX_THREADS", "1")  # the cap the test suite runs under
    assert resolve_threads("auto") == 1
    monkeypatch.setenv("WORLDMODELS_MAX_THREADS", "lots")
    with pytest.raises(ConfigError, match="WORLDMODELS_MAX_THREADS must be a positive int, got 'lots'"):
        resolve_threads("auto")
    assert resolve_threads(1) == 1
    assert compose_config("pendulum_sac").num_threads == "auto"
    with pytest.raises(ConfigError, match=r"config key 'num_threads' expects 'auto' or an int, got 'many'"):
        compose_config("pendulum_sac", sets=["num_threads='many'"])
