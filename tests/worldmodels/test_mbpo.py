"""The mbpo world model: ensemble, trainer, imagination, and one Dyna run through the pipeline."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError
from wm_envs import termination
from workers.buffer import ReplayBuffer, random_buffer
from worldmodels.mbpo import (
    Dataset,
    EnsembleTrainer,
    MbpoWorldModel,
    ProbabilisticEnsemble,
    gaussian_nll,
)

SMALL = {"ensemble_size": 4, "elite_size": 2, "hidden_sizes": [32, 32], "weight_decays": [1e-5, 1e-5, 1e-5]}


class PendulumSpec:
    observation_space = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def small_ensemble(logit_dim: int = 0, seed: int = 0, **kwargs) -> ProbabilisticEnsemble:
    options = {"ensemble_size": 4, "elite_size": 2, "hidden_sizes": [32, 32], "act": "silu", "seed": seed}
    options.update(kwargs)
    return ProbabilisticEnsemble(3, 2, logit_dim, **options)


def regression_data(count: int = 600, seed: int = 0, noise: float = 0.05) -> Dataset:
    """A smooth function of 3 inputs with a little noise; inputs far from zero mean and unit scale."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 3, generator=gen) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([0.0, 10.0, -3.0])
    z = (x - torch.tensor([0.0, 10.0, -3.0])) / torch.tensor([1.0, 5.0, 0.1])
    y = torch.stack([torch.sin(z[:, 0]) + z[:, 1] * z[:, 2], z[:, 0] ** 2 - z[:, 2]], dim=-1)
    return Dataset(x, y + noise * torch.randn(count, 2, generator=gen))


def trainer_for(ensemble: ProbabilisticEnsemble, seed: int = 0, **kwargs) -> EnsembleTrainer:
    options = {**MbpoWorldModel.default_config(), "weight_decays": [1e-5] * len(ensemble.layers), "batch_size": 64,
               "learning_rate": 3e-3, **kwargs}
    return EnsembleTrainer(ensemble, torch.Generator().manual_seed(seed), options)


def pendulum_buffer(steps: int = 600, seed: int = 0) -> ReplayBuffer:
    env = gym.make("Pendulum-v1")
    buffer = random_buffer(env, steps, seed, capacity=10_000)
    env.close()
    return buffer


def build_model(seed: int = 0, **overrides) -> MbpoWorldModel:
    cfg = dict(type="mbpo", env_id="Pendulum-v1", max_epochs=5, rollout_batch_size=50, **SMALL)
    cfg.update(overrides)
    return WORLD_MODEL_REGISTRY.build(cfg, PendulumSpec(), None, seed=seed)


@pytest.fixture(scope="module")
def buffer() -> ReplayBuffer:
    return pendulum_buffer()


# -- the ensemble ---------------------------------------------------------
def test_ensemble_output_shapes() -> None:
    ensemble = small_ensemble(logit_dim=1)
    mean, logvar, logits = ensemble(torch.randn(10, 3))
    assert mean.shape == logvar.shape == (4, 10, 2) and logits.shape == (4, 10, 1)
    mean, _, _ = ensemble(torch.randn(4, 7, 3))
    assert mean.shape == (4, 7, 2)
    mean, _, _ = ensemble(torch.randn(2, 7, 3), members=torch.tensor([3, 1]))
    assert mean.shape == (2, 7, 2)
    with pytest.raises(ValueError, match="inputs"):
        ensemble(torch.randn(3, 7, 3))
    with pytest.raises(ValueError, match="dimensions"):
        ensemble(torch.randn(4, 7, 3, 1))


def test_batched_forward_equals_each_member_alone() -> None:
    ensemble = small_ensemble()
    ensemble.fit_input_normalizer(torch.randn(50, 3) * 3 + 1)
    x = torch.randn(4, 6, 3)
    mean, _logvar, _ = ensemble(x)
    for member in range(4):
        h = (x[member] - ensemble.input_mean) / ensemble.input_std
        for i, layer in enumerate(ensemble.layers):
            h = h @ layer.weight[member] + layer.bias[member]
            if i < len(ensemble.layers) - 1:
                h = torch.nn.functional.silu(h)
        torch.testing.assert_close(mean[member], h[:, :2])
        sub_mean, _, _ = ensemble(x[member:member + 1], members=torch.tensor([member]))
        torch.testing.assert_close(sub_mean[0], mean[member])


def test_logvar_within_learned_bounds() -> None:
    ensemble = small_ensemble()
    _, logvar, _ = ensemble(torch.randn(200, 3) * 1e4)
    logvar = logvar.detach()
    assert float(logvar.max() - logvar.min()) > 10.0  # both bounds are reached
    # the two soft bounds compose, so the upper one is exceeded by softplus(min - max) ~ 3e-5
    assert bool((logvar <= ensemble.max_logvar + 1e-4).all()) and bool((logvar >= ensemble.min_logvar).all())


def test_members_are_initialised_independently() -> None:
    ensemble = small_ensemble()
    for layer in ensemble.layers:
        weights = layer.weight.detach()
        for a in range(4):
            for b in range(a + 1, 4):
                assert not torch.allclose(weights[a], weights[b])
    mean, _, _ = ensemble(torch.randn(5, 3))
    assert (mean[0] - mean[1]).abs().max() > 1e-3


def test_weight_decay_is_half_the_decay_times_the_squared_weights() -> None:
    ensemble = small_ensemble()  # layers 3x32, 32x32, 32x4 per member, 4 members
    with torch.no_grad():
        for layer, value in zip(ensemble.layers, (1.0, 2.0, 3.0), strict=True):
            layer.weight.fill_(value)
            layer.bias.fill_(100.0)  # biases are not decayed
    expected = 0.5 * (0.1 * 4 * 3 * 32 * 1.0 + 0.2 * 4 * 32 * 32 * 4.0 + 0.3 * 4 * 32 * 4 * 9.0)
    assert ensemble.weight_decay_loss([0.1, 0.2, 0.3]).item() == pytest.approx(expected)


def test_members_share_no_gradient() -> None:
    ensemble = small_ensemble()
    mean, logvar, _ = ensemble(torch.randn(4, 8, 3))
    gaussian_nll(mean, logvar, torch.zeros_like(mean))[2].backward()
    for layer in ensemble.layers:
        grad = layer.weight.grad
        assert grad[2].abs().sum() > 0
        assert grad[[0, 1, 3]].abs().sum() == 0


def test_members_draw_their_own_batches() -> None:
    trainer = trainer_for(small_ensemble())
    index = trainer.member_indices(100)
    assert index.shape == (4, 100)
    assert not torch.equal(index[0], index[1])
    order = trainer.shuffled(torch.arange(100).expand(4, 100))
    assert not torch.equal(order[0], order[1])
    assert torch.equal(order.sort(dim=1).values, torch.arange(100).expand(4, 100))  # a permutation each
    no_bootstrap = trainer_for(small_ensemble(), bootstrap=False).member_indices(10)
    assert torch.equal(no_bootstrap, torch.arange(10).expand(4, 10))


def test_input_normalisation() -> None:
    ensemble = small_ensemble()
    data = torch.randn(1000, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 100.0, 0.01])
    data[:, 2] = 7.0  # a constant input keeps std 1 instead of dividing by zero
    ensemble.fit_input_normalizer(data)
    torch.testing.assert_close(ensemble.input_mean, data.mean(0))
    torch.testing.assert_close(ensemble.input_std[:2], data[:, :2].std(0, unbiased=False))
    assert float(ensemble.input_std[2]) == 1.0
    normalised = (data - ensemble.input_mean) / ensemble.input_std
    torch.testing.assert_close(normalised.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    assert "input_mean" in ensemble.state_dict() and "input_std" in ensemble.state_dict()


def test_target_normalisation_maps_back_to_target_units() -> None:
    ensemble = small_ensemble()
    targets = torch.randn(500, 2) * torch.tensor([20.0, 0.01]) + torch.tensor([-8.0, 0.5])
    ensemble.fit_target_normalizer(targets)
    torch.testing.assert_close(ensemble.target_std, targets.std(0, unbiased=False))
    x = torch.randn(9, 3)
    mean_n, logvar_n, _ = ensemble.forward_normalized(x)
    mean, logvar, _ = ensemble(x)
    torch.testing.assert_close(mean, mean_n * ensemble.target_std + ensemble.target_mean)
    torch.testing.assert_close(logvar, logvar_n + 2 * torch.log(ensemble.target_std))
    normalised = ensemble.normalize_targets(targets)
    torch.testing.assert_close(normalised.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)


def test_training_does_not_depend_on_target_units() -> None:
    data = regression_data(count=400)
    scaled = Dataset(data.inputs, data.targets * torch.tensor([1000.0, 0.001]) + 5.0)
    results = []
    for dataset in (data, scaled):
        ensemble = small_ensemble()
        metrics = trainer_for(ensemble, max_epochs=3).fit(dataset)
        results.append((metrics["holdout_mse_normalized"], metrics["holdout_nll"], ensemble.elites.tolist()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-3)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-3, abs=1e-3)
    assert results[0][2] == results[1][2]


# -- the trainer ----------------------------------------------------------
def test_nll_and_mse_decrease_on_a_fixed_dataset() -> None:
    data = regression_data()
    ensemble = small_ensemble()
    trainer = trainer_for(ensemble, max_epochs=30)
    ensemble.fit_input_normalizer(data.inputs)
    before = trainer.evaluate(data)
    metrics = trainer.fit(data)
    after = trainer.evaluate(data)
    assert bool((after["mse"] < 0.3 * before["mse"]).all())
    assert bool((after["nll"] < before["nll"] - 1.0).all())
    assert metrics["holdout_mse"] < 0.3 * float(before["mse"].mean())


def test_early_stopping_on_unlearnable_targets() -> None:
    gen = torch.Generator().manual_seed(3)
    noise = Dataset(torch.randn(400, 3, generator=gen), torch.randn(400, 2, generator=gen))
    metrics = trainer_for(small_ensemble(), max_epochs=200, max_epochs_since_update=5).fit(noise)
    assert metrics["epochs"] < 200
    assert metrics["holdout_samples"] == 80.0


def test_epoch_step_and_holdout_bounds() -> None:
    data = regression_data(count=1000)
    metrics = trainer_for(small_ensemble(), max_epochs=2, improvement_threshold=-1.0).fit(data)
    assert metrics["epochs"] == 2.0 and metrics["train_steps"] == 2 * 13  # 800 rows / 64 per batch
    metrics = trainer_for(small_ensemble(), max_epochs=50, max_train_steps=7).fit(data)
    assert metrics["train_steps"] == 7.0 and metrics["epochs"] == 1.0
    metrics = trainer_for(small_ensemble(), max_holdout=50, max_epochs=1).fit(data)
    assert metrics["holdout_samples"] == 50.0 and metrics["train_samples"] == 950.0


def holdout_of(trainer: EnsembleTrainer, data: Dataset) -> tuple[Dataset, Dataset]:
    """The split ``trainer.fit`` is about to draw (the generator is rewound)."""
    state = trainer.generator.get_state()
    train_index, holdout_index = trainer.split(len(data))
    trainer.generator.set_state(state)
    return data.subset(train_index), data.subset(holdout_index)


def test_each_member_keeps_its_best_weights() -> None:
    data = regression_data(count=300, noise=1.0)
    ensemble = small_ensemble()
    # a learning rate this high makes holdout error swing; each member's best epoch must be kept
    trainer = trainer_for(ensemble, learning_rate=3e-2, max_epochs=12, max_epochs_since_update=12,
                          improvement_threshold=0.0)
    _, holdout = holdout_of(trainer, data)
    trainer.fit(data)
    history = torch.stack(trainer.history)  # [epochs, E]
    assert len(history) == 12
    assert bool((history.argmin(dim=0) < 11).any())  # some member's best epoch is not the last
    final = trainer.evaluate(holdout)["score"]
    torch.testing.assert_close(final, history.min(dim=0).values)


def test_refitting_normalisers_keeps_a_trained_ensemble_s_predictions() -> None:
    data = regression_data(count=300)
    ensemble = small_ensemble()
    trainer_for(ensemble, max_epochs=2).fit(data)
    assert bool(ensemble.trained)
    x = data.inputs[:50]
    before = ensemble(x)
    shifted = regression_data(count=300, seed=1)
    ensemble.fit_input_normalizer(shifted.inputs * 2.0 + 3.0)
    ensemble.fit_target_normalizer(shifted.targets * torch.tensor([5.0, 0.2]) - 1.0)
    after = ensemble(x)
    torch.testing.assert_close(after[0], before[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after[1], before[1], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ensemble.target_std, torch.ones(2))


def test_optimizer_moments_reset_at_each_fit() -> None:
    data = regression_data(count=300)
    trainer = trainer_for(small_ensemble(), max_epochs=1)
    trainer.fit(data)
    steps_after_first = [int(state["step"]) for state in trainer.optimizer.state.values()]
    trainer.fit(data)
    assert [int(state["step"]) for state in trainer.optimizer.state.values()] == steps_after_first
    kept = trainer_for(small_ensemble(), max_epochs=1, reset_optimizer=False)
    kept.fit(data)
    kept.fit(data)
    assert int(next(iter(kept.optimizer.state.values()))["step"]) == 2 * steps_after_first[0]


def hand_normalized_mse(ensemble: ProbabilisticEnsemble, data: Dataset) -> torch.Tensor:
    """Each member's holdout MSE in standardised target units, from its forward alone. Shapes: -> [E]"""
    with torch.no_grad():
        mean, _, _ = ensemble(data.inputs)  # target units
    return ((mean - data.targets) / ensemble.target_std).pow(2).mean(dim=(1, 2))


def test_elites_are_chosen_on_the_restored_best_weights() -> None:
    # a learning rate this high makes holdout error swing, so the best epoch differs from the last
    data = regression_data(count=300, noise=1.0, seed=2)
    ensemble = small_ensemble(ensemble_size=5, elite_size=2)
    trainer = trainer_for(ensemble, learning_rate=3e-2, max_epochs=8, max_epochs_since_update=8,
                          improvement_threshold=0.0, min_epoch_batches=2)
    _, holdout = holdout_of(trainer, data)
    metrics = trainer.fit(data)
    history = torch.stack(trainer.history)  # [epochs, E]
    restored = hand_normalized_mse(ensemble, holdout)
    torch.testing.assert_close(restored, history.min(dim=0).values)  # every member is back at its best epoch
    expected = restored.argsort()[:2].tolist()
    assert history[-1].argsort()[:2].tolist() != expected  # the last epoch would have picked others
    assert ensemble.elites.tolist() == expected  # best first
    assert [metrics["elite_0"], metrics["elite_1"]] == [float(e) for e in expected]
    assert metrics["holdout_mse_normalized"] == pytest.approx(float(restored[expected].mean()), rel=1e-5)
    with torch.no_grad():
        target_unit_mse = (ensemble(holdout.inputs)[0] - holdout.targets).pow(2).mean(dim=(1, 2))
    assert metrics["holdout_mse"] == pytest.approx(float(target_unit_mse[expected].mean()), rel=1e-5)


def test_learned_termination_head() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(800, 3, generator=gen)
    data = Dataset(x, torch.zeros(800, 2), (x[:, 0] > 0.5).float())
    ensemble = small_ensemble(logit_dim=1)
    metrics = trainer_for(ensemble, max_epochs=20).fit(data)
    assert metrics["holdout_termination_accuracy"] > 0.9


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="weight_decays"):
        trainer_for(small_ensemble(), weight_decays=[1e-5])
    with pytest.raises(ConfigError, match="elite_size"):
        small_ensemble(elite_size=5)
    # the trainer's numbers: a clear error for a wrong type too, not a TypeError from a comparison
    for key, value, message in (("holdout_ratio", 1.0, r"'world_model.holdout_ratio' must be within \[0, 1\)"),
                                ("holdout_ratio", "0.2", "'world_model.holdout_ratio' must be a finite number"),
                                ("batch_size", 0, r"'world_model.batch_size' must be within \[1, inf\]"),
                                ("max_epochs", None, "'world_model.max_epochs' must be a finite number")):
        with pytest.raises(ConfigError, match=message):
            trainer_for(small_ensemble(), **{key: value})
    with pytest.raises(ConfigError, match="unknown config key"):
        build_model(ensemble_sise=3)
    with pytest.raises(ConfigError, match="termination"):
        build_model(termination="sometimes")
    with pytest.raises(ConfigError, match="registered"):
        build_model(env_id="Acrobot-v1", termination="registry")


# -- the world model ------------------------------------------------------
def test_registered_and_defaults() -> None:
    assert WORLD_MODEL_REGISTRY.get("mbpo") is MbpoWorldModel
    cfg = MbpoWorldModel.default_config()
    assert (cfg.ensemble_size, cfg.elite_size, cfg.hidden_sizes, cfg.activation) == (7, 5, [200] * 4, "silu")
    assert cfg.holdout_ratio == 0.2 and cfg.max_epochs_since_update == 5


def test_termination_source() -> None:
    assert build_model().termination_fn is termination.never_terminates
    assert build_model(env_id="Hopper-v5").termination_fn is termination.hopper
    learned = build_model(env_id=None)
    assert learned.termination_fn is None and learned.ensemble.logit_dim == 1
    assert build_model(termination="learned").ensemble.logit_dim == 1


def elite_mse(model: MbpoWorldModel, data: Dataset) -> tuple[float, float, float]:
    """The elites' mean squared error in target units (all dims, reward, obs deltas), computed by hand."""
    with torch.no_grad():
        mean, _, _ = model.ensemble(data.inputs, members=model.ensemble.elites)  # [K, N, 1 + O]
    error = (mean - data.targets).pow(2)
    return float(error.mean()), float(error[..., 0].mean()), float(error[..., 1:].mean())


def test_train_and_eval_report_the_elites_errors(buffer: ReplayBuffer) -> None:
    model = build_model(eval_samples=100)
    data = model.dataset(buffer)
    _, holdout = holdout_of(model.trainer, data)
    metrics = model.train(buffer, envstep=600, train_iter=0)
    assert metrics["holdout_samples"] == 120.0 and metrics["train_samples"] == 480.0
    assert metrics["holdout_mse"] == pytest.approx(elite_mse(model, holdout)[0], rel=1e-5)
    newest = model.dataset(buffer, np.arange(500, 600))  # eval reads the eval_samples newest rows
    mse, reward_mse, obs_mse = elite_mse(model, newest)
    recent = model.eval(buffer, envstep=600, train_iter=0)
    assert recent["recent_mse"] == pytest.approx(mse, rel=1e-5)
    assert recent["recent_reward_mse"] == pytest.approx(reward_mse, rel=1e-5)
    assert recent["recent_obs_mse"] == pytest.approx(obs_mse, rel=1e-5)


def test_same_seed_same_numbers(buffer: ReplayBuffer) -> None:
    results = []
    for _ in range(2):
        model = build_model(seed=3)
        metrics = model.train(buffer, envstep=600, train_iter=0)
        obs = torch.as_tensor(buffer.data["obs"][:32])
        results.append((metrics["holdout_mse"], model.step(obs, torch.zeros(32, 1))))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)
    other = build_model(seed=4)
    assert not torch.equal(other.ensemble.layers[0].weight, build_model(seed=3).ensemble.layers[0].weight)


def test_step_uses_one_elite_per_row(buffer: ReplayBuffer) -> None:
    model = build_model()
    model.train(buffer, envstep=600, train_iter=0)
    obs = torch.as_tensor(buffer.data["obs"][:200])
    action = torch.as_tensor(buffer.data["action"][:200])
    state = model.generator.get_state()
    reward, next_obs, _ = model.step(obs, action, deterministic=True)
    model.generator.set_state(state)
    choice = torch.randint(0, 2, (200,), generator=model.generator)
    mean, _, _ = model.ensemble(torch.cat([obs, action], -1), members=model.ensemble.elites)
    expected = mean[choice, torch.arange(200)]
    torch.testing.assert_close(reward, expected[:, 0])
    torch.testing.assert_close(next_obs, obs + expected[:, 1:])
    assert len(set(choice.tolist())) == 2  # rows really go to different elites
    # sampled steps add noise around that mean
    sampled_reward, _, _ = model.step(obs, action)
    assert not torch.allclose(sampled_reward, reward)


class InvertedPendulumSpec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
    action_space = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)


@pytest.fixture(scope="module")
def terminating_buffer() -> ReplayBuffer:
    """InvertedPendulum under random actions: about one transition in six terminates."""
    env = gym.make("InvertedPendulum-v5")
    buffer = random_buffer(env, 800, seed=0)
    env.close()
    return buffer


def inverted_pendulum_model(**overrides) -> MbpoWorldModel:
    cfg = dict(type="mbpo", env_id="InvertedPendulum-v5", max_epochs=30, rollout_batch_size=50, **SMALL)
    cfg.update(overrides)
    return WORLD_MODEL_REGISTRY.build(cfg, InvertedPendulumSpec(), None, seed=0)


def test_registered_termination_in_step(terminating_buffer: ReplayBuffer) -> None:
    model = inverted_pendulum_model(max_epochs=5)
    assert model.termination_fn is termination.inverted_pendulum and model.ensemble.logit_dim == 0
    model.train(terminating_buffer, envstep=800, train_iter=0)
    obs = torch.as_tensor(terminating_buffer.data["obs"], dtype=torch.float32)
    action = torch.as_tensor(terminating_buffer.data["action"])
    _, next_obs, done = model.step(obs, action, deterministic=True)
    assert done.dtype == torch.bool
    assert torch.equal(done, next_obs[:, 1].abs() > 0.2)  # the pole angle of the predicted next state
    assert 0 < int(done.sum()) < len(done)


def test_learned_termination_in_step(terminating_buffer: ReplayBuffer) -> None:
    model = inverted_pendulum_model(termination="learned", max_epochs=60, max_epochs_since_update=10,
                                    learning_rate=3e-3)
    metrics = model.train(terminating_buffer, envstep=800, train_iter=0)
    terminated = torch.as_tensor(terminating_buffer.data["terminated"])
    never_done_accuracy = 1.0 - float(terminated.float().mean())  # what a head that always says "go on" scores
    assert never_done_accuracy < 0.9
    assert metrics["holdout_termination_accuracy"] > never_done_accuracy + 0.05
    obs = torch.as_tensor(terminating_buffer.data["obs"], dtype=torch.float32)
    action = torch.as_tensor(terminating_buffer.data["action"])
    _, _, done = model.step(obs, action)
    assert done.dtype == torch.bool
    hits = int((done & terminated).sum())
    assert hits > 0.6 * int(terminated.sum())  # most true terminations are predicted
    assert int((done & ~terminated).sum()) < 0.03 * len(done)  # and few false ones


def test_state_dict_round_trip(buffer: ReplayBuffer) -> None:
    model = build_model()
    model.train(buffer, envstep=600, train_iter=0)
    copy = build_model(seed=9)
    copy.load_state_dict(model.state_dict())
    obs = torch.as_tensor(buffer.data["obs"][:16])
    for a, b in zip(model.step(obs, torch.ones(16, 1)), copy.step(obs, torch.ones(16, 1)), strict=True):
        assert torch.equal(a, b)


class RandomPolicy:
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(0)

    def collect(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.rand(obs.shape[0], 1, generator=self.generator) * 4 - 2


def test_img_buffer_never_exceeds_capacity(buffer: ReplayBuffer) -> None:
    schedule = {"type": "linear", "rollout_start_step": 600, "rollout_end_step": 1600, "rollout_length_min": 1,
                    "rollout_length_max": 5}
    model = build_model(rollout_batch_size=40, rollout_retain=2, rollout_length_scheduler=schedule,
                        env_id=None)  # learned termination: branches end at different steps
    model.train(buffer, envstep=600, train_iter=0)
    img_buffer = model.make_img_buffer(600)
    lengths = []
    for envstep in (600, 800, 1000, 1200, 1600, 1600, 1600, 1000, 600):  # growing, then shrinking
        model.fill_img_buffer(RandomPolicy(), buffer, img_buffer, envstep, 0)
        capacity = model.rollout_length(envstep) * 40 * 2
        lengths.append(model.rollout_length(envstep))
        assert img_buffer.capacity == capacity
        assert len(img_buffer) <= capacity
    assert min(lengths) == 1 and max(lengths) == 5
    assert len(img_buffer) > 0


def test_one_dyna_run_through_the_pipeline(tmp_path) -> None:
    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    cfg = compose_config("pendulum_mbpo", preset="debug", env_steps=300)
    assert cfg.world_model.env_id == "Pendulum-v1"
    pipeline = SerialPipeline(cfg, out_dir=tmp_path, show_progress=False)
    summary = pipeline.run()
    assert summary["env_steps"] == 300
    assert pipeline.world_model.trained and pipeline.world_model.termination_fn is termination.never_terminates
    assert len(pipeline.img_buffer) > 0
    assert pipeline.learner.train_iter > 0
    assert np.isfinite(summary["eval_return_mean"])
    batch = pipeline.world_model.policy_input(pipeline.env_buffer, pipeline.img_buffer, 20, 0)
    assert batch["obs"].shape == (20, 3)
