import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from easydict import EasyDict

from policies.dreamer import DreamerPolicy, ReturnNormalizer, lambda_returns
from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from tests.worldmodels.test_dreamerv3 import TINY, random_buffer
from wm_app.experiment import compose_config
from wm_core.config import ConfigError
from workers.pipeline import serial_pipeline
from worldmodels.base import ContractError, DreamWorldModel


class DiscreteSpec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(3)


class ContinuousSpec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


HORIZON_4 = {"rollout_length_scheduler": {"type": "constant", "rollout_length": 4}}


def build(spec=DiscreteSpec, seed=0, trained=True, **policy_cfg):
    model = WORLD_MODEL_REGISTRY.build({**TINY, **HORIZON_4}, spec(), None, seed=seed)
    policy = POLICY_REGISTRY.build({"type": "dreamer", "imagine_starts": 8, **policy_cfg}, spec(),
                                   world_model=model, seed=seed)
    if trained:
        model.train_step(random_buffer(spec).sample_sequences(3, 8))
    return model, policy


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def test_lambda_returns_hand_computed():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    continues = torch.tensor([[1.0], [1.0], [0.0]])
    # R2 = 3 (episode ends); R1 = 2 + .5 (.5 * 30 + .5 * 3); R0 = 1 + .5 (.5 * 20 + .5 * R1)
    returns = lambda_returns(rewards, values, continues, gamma=0.5, lambda_=0.5)
    assert returns.squeeze(-1).tolist() == pytest.approx([8.5625, 10.25, 3.0])
    # lambda 0: one-step targets; lambda 1: discounted rewards plus the discounted last value
    assert lambda_returns(rewards, values, continues, 0.5, 0.0).squeeze(-1).tolist() == pytest.approx(
        [1 + 0.5 * 20, 2 + 0.5 * 30, 3.0])
    open_ended = torch.ones(3, 1)
    assert lambda_returns(rewards, values, open_ended, 0.5, 1.0)[0].item() == pytest.approx(
        1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40)
    with pytest.raises(ValueError, match="must be \\[N, B\\], \\[N\\+1, B\\]"):
        lambda_returns(rewards, values[:-1], continues, 0.5, 0.5)


def test_percentile_return_normalisation():
    returns = torch.arange(101.0)  # 5th percentile 5, 95th 95
    immediate = ReturnNormalizer(decay=0.0)
    immediate.update(returns)
    assert immediate.low.item() == pytest.approx(5.0) and immediate.high.item() == pytest.approx(95.0)
    assert immediate.scale().item() == pytest.approx(90.0)
    slow = ReturnNormalizer(decay=0.5)
    slow.update(returns)
    slow.update(returns)
    assert slow.low.item() == pytest.approx(3.75) and slow.high.item() == pytest.approx(71.25)
    small = ReturnNormalizer(decay=0.0, floor=1.0)
    small.update(returns / 1000)  # a range of 0.09 is not blown up: the scale stays at the floor
    assert small.scale().item() == 1.0


@pytest.mark.parametrize("spec", [DiscreteSpec, ContinuousSpec])
def test_no_gradient_crosses_between_actor_critic_and_world_model(spec):
    model, policy = build(spec)
    assert policy.backprop == (spec is ContinuousSpec)
    model.optimizers["model"].zero_grad(set_to_none=True)
    model_before = snapshot(model.nets)
    metrics = policy.learn(model.imagination_starts())
    assert all(np.isfinite(v) for v in metrics.values())
    assert all(p.grad is None for p in model.nets.parameters())  # the actor loss reaches no model weight
    assert all(torch.equal(a, b) for a, b in zip(model_before, snapshot(model.nets), strict=True))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.actor.parameters())

    for optimizer in policy.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    policy_before = snapshot(policy.nets)
    model.train_step(random_buffer(spec, seed=1).sample_sequences(3, 8))
    assert all(p.grad is None for p in policy.nets.parameters())  # the model loss reaches no policy weight
    assert all(torch.equal(a, b) for a, b in zip(policy_before, snapshot(policy.nets), strict=True))


def synthetic_rollout(policy, model, horizon=4, batch=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(horizon + 1, batch, model.feature_dim, generator=gen)
    index = torch.randint(0, model.actions.dim, (horizon + 1, batch), generator=gen)
    actions = torch.nn.functional.one_hot(index, model.actions.dim).float()
    returns = torch.randn(horizon, batch, generator=gen) * 3
    values = torch.randn(horizon + 1, batch, generator=gen)
    weights = torch.rand(horizon, batch, generator=gen)
    return states, actions, returns, values, weights


def test_discrete_actor_loss_is_reinforce_with_entropy():
    model, policy = build(DiscreteSpec, trained=False, entropy_coef=0.1)
    policy.return_norm.high.fill_(4.0)  # scale 4
    states, actions, returns, values, weights = synthetic_rollout(policy, model)
    loss, entropy = policy.actor_loss(states, actions, returns, values, weights)
    log_probs = policy.actor(states[:-1])[0]
    chosen = (log_probs * actions[:-1]).sum(-1)
    ent = -(log_probs.exp() * log_probs).sum(-1)
    expected = -(weights * (chosen * (returns - values[:-1]) / 4.0 + 0.1 * ent)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert entropy.item() == pytest.approx(ent.mean().item(), rel=1e-5)

    # a step on the loss makes actions with a positive advantage more likely
    returns = values[:-1] + torch.where(actions[:-1, :, 0] > 0, 1.0, -1.0)
    before = (policy.actor(states[:-1])[0] * actions[:-1]).sum(-1)
    optimizer = torch.optim.SGD(policy.actor.parameters(), lr=0.5)
    optimizer.zero_grad()
    policy.actor_loss(states, actions, returns, values, weights)[0].backward()
    optimizer.step()
    change = (policy.actor(states[:-1])[0] * actions[:-1]).sum(-1) - before
    favoured = actions[:-1, :, 0] > 0
    assert (change[favoured] > 0).all() and (change[~favoured] < 0).all()


def test_continuous_actor_loss_backpropagates_normalised_returns():
    model, policy = build(ContinuousSpec, trained=False, entropy_coef=0.1)
    policy.return_norm.high.fill_(2.0)
    states, _, returns, values, weights = synthetic_rollout(policy, model)
    returns.requires_grad_(True)
    values.requires_grad_(True)
    loss, entropy = policy.actor_loss(states, torch.zeros(5, 5, 1), returns, values, weights)
    mean, std = policy.actor(states[:-1])
    ent = (std.log() + 0.5 * np.log(2 * np.pi * np.e)).sum(-1)
    expected = -(weights * ((returns - values[:-1]) / 2.0 + 0.1 * ent)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert torch.allclose(returns.grad, -weights / (2.0 * weights.numel()))
    assert values.grad is None or values.grad.abs().sum() == 0  # the baseline carries no gradient


def test_dreamerv3_backprop_keeps_the_baselines_gradient():
    model, policy = build(ContinuousSpec, trained=False, entropy_coef=0.1, actor_backprop="dreamerv3")
    policy.return_norm.high.fill_(2.0)
    states, _, returns, values, weights = synthetic_rollout(policy, model)
    values.requires_grad_(True)
    loss, _ = policy.actor_loss(states, torch.zeros(5, 5, 1), returns, values, weights)
    loss.backward()
    # loss = -mean(w * ((R - v) / 2 + ...)): d loss / d v_t = w_t / (2 * numel), the last value none
    torch.testing.assert_close(values.grad[:-1], weights / (2.0 * weights.numel()))
    assert values.grad[-1].abs().sum() == 0


@pytest.mark.parametrize("mode", ["full", "dreamerv3"])
def test_what_the_actor_sees_in_imagination(mode, monkeypatch):
    model, policy = build(ContinuousSpec, actor_backprop=mode)
    seen = []
    forward = policy.actor.forward

    def recording(features):
        seen.append(features.requires_grad)
        return forward(features)

    monkeypatch.setattr(policy.actor, "forward", recording)
    states, *_ = policy.imagine_with(model, model.starts[:4], 0, policy.task)
    assert states[1:].requires_grad  # the dynamics carry the actions' gradients either way
    # "full": from the first imagined state on, the actor's input carries gradient; "dreamerv3": never
    assert seen[1:] and all(flag is (mode == "full") for flag in seen[1:])


def test_learn_waits_for_the_model_and_updates_the_slow_critic_at_its_rate():
    model, policy = build(trained=False, slow_critic_fraction=0.25)
    assert policy.learn(model.imagination_starts()) == {}
    model.train_step(random_buffer(DiscreteSpec).sample_sequences(3, 8))
    slow_before = snapshot(policy.slow_critic)
    metrics = policy.learn(model.imagination_starts())
    assert {"actor_loss", "critic_loss", "entropy", "imagined_return", "return_scale"} <= set(metrics)
    assert policy.train_iter == 1
    fast_after = snapshot(policy.critic)
    assert any(not torch.equal(a, b) for a, b in zip(slow_before, fast_after, strict=True))  # the critic moved
    for slow, before, fast in zip(snapshot(policy.slow_critic), slow_before, fast_after, strict=True):
        torch.testing.assert_close(slow, 0.75 * before + 0.25 * fast)  # an EMA step of rate 0.25


class StubDreamModel(DreamWorldModel):
    """A Dream model whose imagined rollouts have known rewards and continue probabilities.

    Rows: 2 imagination starts with continues (1, 0.5); the rollout moves every state by +1
    and reports ``REWARDS`` and ``DONES`` ([H=3, B=2]) whatever the actions.
    """

    feature_dim = 4
    sizes = EasyDict(units=8, layers=1)
    actions = EasyDict(discrete=True, dim=2)
    REWARDS = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    DONES = torch.tensor([[0.2, 0.0], [0.5, 0.5], [0.0, 0.0]])

    def __init__(self):
        super().__init__({"rollout_length_scheduler": {"type": "constant", "rollout_length": 3}}, DiscreteSpec())
        self.starts = torch.linspace(-1.0, 1.0, 8).reshape(2, 4)
        self.start_continues = torch.tensor([1.0, 0.5])

    def train(self, env_buffer, envstep, train_iter):
        return {}

    def step(self, obs, action):
        raise AssertionError("not used while learning")

    def initial_state(self, batch):
        raise AssertionError("not used while learning")

    def filter_step(self, *args):
        raise AssertionError("not used while learning")

    def rollout(self, start, actor_fn, envstep, horizon=None):
        horizon = self.rollout_length(envstep)
        states, actions = [start], []
        for _ in range(horizon + 1):
            action, _ = actor_fn(states[-1])
            actions.append(action)
            states.append(states[-1] + 1.0)
        zeros = torch.zeros(horizon + 1, start.shape[0])
        return torch.stack(states[:-1]), torch.stack(actions), self.REWARDS, zeros, self.DONES


def test_learn_weights_each_step_by_the_discounted_chance_of_reaching_it(monkeypatch):
    model = StubDreamModel()
    policy = DreamerPolicy({"gamma": 0.5, "return_lambda": 0.5, "imagine_starts": 0}, DiscreteSpec(),
                           world_model=model)
    seen = {}
    actor_loss, critic_loss = policy.actor_loss, policy.critic_loss

    def record_actor(states, actions, returns, values, weights, outputs=None, ac=None):
        seen.update(returns=returns, values=values, actor_weights=weights)
        return actor_loss(states, actions, returns, values, weights, outputs, ac)

    def record_critic(states, log_probs, returns, weights, ac=None):
        seen["critic_weights"] = weights
        return critic_loss(states, log_probs, returns, weights, ac)

    monkeypatch.setattr(policy, "actor_loss", record_actor)
    monkeypatch.setattr(policy, "critic_loss", record_critic)
    metrics = policy.learn(model.imagination_starts())
    # continues c = (start, 1 - dones): row 0 (1, .8, .5, 1), row 1 (.5, 1, .5, 1); the weight of step t
    # is c_0 prod_{0<i<=t} gamma c_i = cumprod(gamma c)_t / gamma, for t = 0..H-1
    expected = torch.tensor([[1.0, 0.5], [1.0 * 0.5 * 0.8, 0.5 * 0.5 * 1.0], [0.4 * 0.5 * 0.5, 0.25 * 0.5 * 0.5]])
    torch.testing.assert_close(seen["actor_weights"], expected)
    torch.testing.assert_close(seen["critic_weights"], expected)
    # the fresh critic values everything at 0: R_t = r_t + gamma (1 - d_t) lambda R_(t+1), R_3 = 0
    torch.testing.assert_close(seen["values"], torch.zeros(4, 2), atol=1e-5, rtol=0)
    row0 = [1 + 0.5 * 0.8 * 0.5 * (2 + 0.5 * 0.5 * 0.5 * 3), 2 + 0.5 * 0.5 * 0.5 * 3, 3.0]
    torch.testing.assert_close(seen["returns"], torch.tensor([row0, [0.0, 0.0, 0.0]]).T, atol=1e-5, rtol=0)
    assert metrics["imagined_continue"] == pytest.approx(float((1 - StubDreamModel.DONES).mean()))


@pytest.mark.parametrize("spec", [DiscreteSpec, ContinuousSpec])
def test_action_shapes_and_bounds(spec):
    _, policy = build(spec)
    obs = torch.randn(4, 3)
    for action in (policy.collect(obs), policy.act(obs)):
        if spec is DiscreteSpec:
            assert action.shape == (4,) and action.dtype == torch.long and ((action >= 0) & (action < 3)).all()
        else:
            assert action.shape == (4, 1) and (action.abs() <= 2.0).all()
    with pytest.raises(ValueError, match="obs must have 2 dimensions"):
        policy.act(torch.randn(3))


def act_sequence(policy, observations):
    policy.reset(evaluation=True)
    return [policy.act(obs) for obs in observations]


@pytest.mark.parametrize("spec", [DiscreteSpec, ContinuousSpec])
def test_save_load_gives_identical_actions(spec):
    model, policy = build(spec)
    policy.learn(model.imagination_starts())
    observations = torch.randn(6, 2, 3)
    fresh_model, fresh_policy = build(spec, seed=7, trained=False)
    fresh_model.load_state_dict(model.state_dict())
    fresh_policy.load_state_dict(policy.state_dict())
    for a, b in zip(act_sequence(policy, observations), act_sequence(fresh_policy, observations), strict=True):
        assert torch.equal(a, b)
    collected = [policy.collect(obs) for obs in observations]
    fresh_collected = [fresh_policy.collect(obs) for obs in observations]
    assert all(torch.equal(a, b) for a, b in zip(collected, fresh_collected, strict=True))


def eval_state(policy):
    return torch.cat([policy.states["eval"]["deter"], policy.states["eval"]["stoch"]], -1)


def test_recurrent_state_resets_where_an_episode_starts():
    _, policy = build(ContinuousSpec)
    observations = torch.randn(4, 2, 3)
    act_sequence(policy, observations[:3])
    carried = eval_state(policy)
    policy.reset(torch.tensor([True, False]), evaluation=True)
    policy.act(observations[3])
    after_reset = eval_state(policy)
    fresh = build(ContinuousSpec)[1]
    fresh.load_state_dict(policy.state_dict())
    fresh.world_model = policy.world_model
    fresh.reset(evaluation=True)
    fresh.act(observations[3])
    started = eval_state(fresh)
    assert torch.equal(after_reset[0], started[0])  # slot 0 restarted from the initial state
    assert not torch.equal(after_reset[1], started[1])  # slot 1 carried its history
    assert not torch.equal(carried[1], after_reset[1])


def test_collector_and_evaluator_states_are_apart():
    _, policy = build(ContinuousSpec)
    observations = torch.randn(3, 1, 3)
    reference = act_sequence(policy, observations)
    policy.reset(evaluation=True)
    interleaved = []
    for obs in observations:
        interleaved.append(policy.act(obs))
        policy.collect(torch.randn(2, 3))  # the collector's two slots step in between
    assert all(torch.equal(a, b) for a, b in zip(reference, interleaved, strict=True))
    assert policy.states["collect"]["deter"].shape[0] == 2


def test_bad_policy_config_is_named():
    model, _ = build(trained=False)
    with pytest.raises(ConfigError, match="'policy.actor_grad' must be one of"):
        DreamerPolicy({"actor_grad": "magic"}, DiscreteSpec(), world_model=model)
    with pytest.raises(ConfigError, match="'policy.actor_backprop' must be one of full, dreamerv3, got 'partial'"):
        DreamerPolicy({"actor_backprop": "partial"}, DiscreteSpec(), world_model=model)
    with pytest.raises(ConfigError, match="needs a Dream world model such as 'dreamerv3'"):
        DreamerPolicy({}, DiscreteSpec())


# cartpole_dreamerv3's debug preset runs in test_same_seed_same_run_on_the_configured_schedule
DREAMER_CONFIGS = ["pendulum_dreamerv3", "inverted_pendulum_dreamerv3", "pendulum_pixels_dreamerv3"]


@pytest.mark.parametrize("name", DREAMER_CONFIGS)
def test_debug_preset_runs_through_the_serial_pipeline(name, tmp_path):
    cfg = compose_config(name, preset="debug")
    result = serial_pipeline(cfg, out_dir=tmp_path, show_progress=False)
    assert result["env_steps"] == cfg.env_steps and result["train_iter"] > 0
    assert np.isfinite(result["eval_return_mean"])


def test_same_seed_same_run_on_the_configured_schedule(tmp_path):
    cfg = compose_config("cartpole_dreamerv3", preset="debug")

    def progress(out, seed):
        result = serial_pipeline(compose_config("cartpole_dreamerv3", preset="debug", seed=seed),
                                 out_dir=tmp_path / out, show_progress=False)
        with open(f"{result['run_dir']}/progress.csv") as handle:
            return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(handle)]

    first, second, other_seed = progress("a", 0), progress("b", 0), progress("c", 1)
    assert first == second
    assert [row["world_model/loss"] for row in first] != [row["world_model/loss"] for row in other_seed]
    # The schedule the config sets, worked out by hand: the policy updates updates_per_step times per
    # env step after the warm-up; the model trains pretrain_steps once learning_starts steps are in,
    # then replay_ratio steps per env step, and logs every log_every of its steps.
    wm, warmup = cfg.world_model, cfg.collector.warmup_steps
    assert [int(row["env_step"]) for row in first] == [0, 150, 300]
    for row in first[1:]:
        step = int(row["env_step"])
        assert int(row["train_iter"]) == int(cfg.learner.updates_per_step * (step - warmup))
        owed = wm.pretrain_steps + wm.replay_ratio * (step - wm.learning_starts)
        assert float(row["world_model/gradient_steps"]) == wm.log_every * (owed // wm.log_every)


def test_the_horizon_is_the_world_models_schedule_not_a_policy_setting():
    model, _ = build(trained=False)
    with pytest.raises(ConfigError, match="policy.horizon is gone: .*world_model.rollout_length_scheduler"):
        DreamerPolicy({"horizon": 5}, DiscreteSpec(), world_model=model)
    schedule = {"type": "linear", "rollout_start_step": 0, "rollout_end_step": 100, "rollout_length_min": 1,
                "rollout_length_max": 5}
    model = WORLD_MODEL_REGISTRY.build({**TINY, "rollout_length_scheduler": schedule}, DiscreteSpec(), None)
    policy = DreamerPolicy({"imagine_starts": 4}, DiscreteSpec(), world_model=model)
    model.train_step(random_buffer(DiscreteSpec).sample_sequences(3, 8))
    lengths = []
    real_rollout = model.rollout

    def recording_rollout(start, actor_fn, envstep, horizon=None):
        out = real_rollout(start, actor_fn, envstep, horizon)
        lengths.append(out[2].shape[0])
        return out

    model.rollout = recording_rollout
    for envstep in (0, 50, 100):
        model.envstep = envstep
        policy.learn(model.imagination_starts())
    assert lengths == [1, 3, 5]


class NoGradDream(DreamWorldModel):
    """A Dream model whose imagined step runs under no_grad, as a Dyna model's ``step`` may."""

    feature_dim = 3
    sizes = EasyDict(units=8, layers=1)

    def __init__(self, sets_starts=True):
        super().__init__({"rollout_length_scheduler": {"type": "constant", "rollout_length": 2}}, ContinuousSpec())
        self.actions = EasyDict(discrete=False, dim=1)
        self.sets_starts = sets_starts

    def train(self, env_buffer, envstep, train_iter):
        if self.sets_starts:
            self.starts, self.start_continues = torch.zeros(4, 3), torch.ones(4)
        return {"loss": 0.0}

    @torch.no_grad()
    def step(self, obs, action):
        return obs.sum(-1), obs + action, torch.zeros(obs.shape[0], dtype=torch.bool)

    def initial_state(self, batch):
        return torch.zeros(batch, 3), torch.zeros(batch, 0)

    def filter_step(self, deter, stoch, action, obs, is_first, generator):
        return obs, stoch


class Buffer:
    def __len__(self):
        return 100


def test_the_two_silent_dream_contract_failures_are_one_line_errors():
    model = NoGradDream()
    policy = DreamerPolicy({}, ContinuousSpec(), world_model=model)
    model.update(1000, Buffer(), policy, 0)
    with pytest.raises(ContractError, match="imagined states carry no gradient, so the continuous actor"):
        policy.learn(model.policy_input(Buffer(), None, 4, 0))
    silent = NoGradDream(sets_starts=False)
    assert silent.policy_input(Buffer(), None, 4, 0) is None  # not trained yet: nothing to learn from
    silent.update(1000, Buffer(), policy, 0)
    with pytest.raises(ContractError, match="trained but set no imagination starts"):
        silent.policy_input(Buffer(), None, 4, 0)


def test_a_dream_model_that_cannot_act_is_refused_when_the_policy_is_built():
    class Blind(NoGradDream):
        filter_step = DreamWorldModel.filter_step
        sizes = None

    with pytest.raises(ContractError, match="cannot act through world model 'None': it lacks filter_step, sizes"):
        DreamerPolicy({}, ContinuousSpec(), world_model=Blind())
