"""Plan2Explore on the Dream path (``world_model.plan2explore`` of ``dreamerv3``): the disagreement
ensemble, the intrinsic reward carried through ``rollout``'s ``aug_rewards``, the exploration and task
actor-critics of the ``dreamer`` policy, the collecting actor's switch, resume and a debug run."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from policies.dreamer import DreamerPolicy
from registry import POLICY_REGISTRY
from tests.policies.test_dreamer import ContinuousSpec, DiscreteSpec
from tests.workers.test_resume import progress_without_wall_time, run
from tests.worldmodels.test_dreamerv3 import VectorSpec, make, random_buffer
from wm_app.cli import main
from wm_core.config import ConfigError
from workers.checkpoint import load_checkpoint
from workers.pipeline import SerialPipeline
from worldmodels.base import ContractError

HORIZON_4 = {"rollout_length_scheduler": {"type": "constant", "rollout_length": 4}}


def p2e(**cfg):
    return {"plan2explore": {"enabled": True, "ensemble": 4, "units": 16, "layers": 1, **cfg}}


def build(spec=DiscreteSpec, seed=0, imagine_starts=8, **p2e_cfg):
    """A tiny dreamerv3 with Plan2Explore on, trained one step, and its dreamer policy."""
    model = make(spec, seed=seed, **HORIZON_4, **p2e(**p2e_cfg))
    policy = POLICY_REGISTRY.build({"type": "dreamer", "imagine_starts": imagine_starts}, spec(), world_model=model,
                                   seed=seed)
    model.train_step(random_buffer(spec).sample_sequences(3, 8))
    return model, policy


def model_parameters(model):
    return {name: p.detach().clone() for name, p in model.nets.named_parameters()
            if not name.startswith("plan2explore.")}


# -- off by default ---------------------------------------------------------------------------
def test_off_by_default_builds_nothing_extra():
    model = make(VectorSpec)
    policy = DreamerPolicy({}, VectorSpec(), world_model=model)
    assert model.cfg.plan2explore.enabled is False and model.disagreement is None and model.exploration is None
    assert "plan2explore" not in model.nets and set(model.optimizers) == {"model"}
    assert policy.explorer is None and not policy.explores() and set(policy.optimizers) == {"actor", "critic"}
    assert not any(key.startswith("explore_") for key in policy.state_dict()["nets"])
    with pytest.raises(ContractError, match="plan2explore.enabled is False"):
        model.intrinsic_reward(torch.zeros(2, model.feature_dim), torch.zeros(2, 2))


def test_the_ensemble_leaves_the_world_models_training_unchanged():
    """With the same seed and batches, the world model's parameters after training steps are the
    same with Plan2Explore on as off: the ensemble takes nothing from its graph, RNG or optimiser."""
    buffer = random_buffer(VectorSpec, steps=100)
    batches = [buffer.sample_sequences(3, 8) for _ in range(3)]
    off, on = make(VectorSpec), make(VectorSpec, **p2e())
    for batch in batches:
        metrics_off, metrics_on = off.train_step(batch), on.train_step(batch)
        assert metrics_on["loss"] == metrics_off["loss"] and metrics_on["grad_norm"] == metrics_off["grad_norm"]
    before, after = model_parameters(off), model_parameters(on)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(off.starts, on.starts)


# -- the ensemble ---------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["stoch", "embed"])
def test_ensemble_loss_falls_on_a_fixed_batch(target):
    model = make(VectorSpec, **p2e(target=target, lr=3e-3))
    batch = random_buffer(VectorSpec).sample_sequences(3, 8)
    with torch.no_grad():
        _, _, observed, embed = model.loss_and_embed(batch)  # fixed inputs and targets
    steps = [model.train_disagreement(batch, observed, embed) for _ in range(60)]
    losses = [m["plan2explore_loss"] for m in steps]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < 0.3 * losses[0]
    # members fitted to the same targets agree more on the data they saw
    assert steps[-1]["plan2explore_disagreement"] < steps[0]["plan2explore_disagreement"]
    # inside train_step too (the world model learning beside it, with fresh latent draws)
    model = make(VectorSpec, lr=0.0, **p2e(target=target, lr=3e-3))
    losses = [model.train_step(batch)["plan2explore_loss"] for _ in range(30)]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


@pytest.mark.parametrize("target", ["stoch", "embed"])
def test_training_pairs_are_each_steps_start_state_and_action_to_its_latent(target):
    model = make(VectorSpec, **p2e(target=target))
    batch = random_buffer(VectorSpec, episode=5).sample_sequences(3, 8)
    _, _, observed, embed = model.loss_and_embed(batch)
    features, actions, targets = model.disagreement_data(batch, observed, embed)
    is_first = batch["is_first"].bool()
    assert is_first[0].all() and is_first[1:].any()  # episode starts inside the sequences too
    steps, size = is_first.shape
    assert features.shape == (steps * size, model.feature_dim) and actions.shape == (steps * size, 2)
    first_features = iter(observed.first_features)
    row = 0
    for t in range(steps):
        for b in range(size):  # row-major, as boolean indexing takes them
            start = next(first_features) if is_first[t, b] else observed.features[t - 1, b]
            assert torch.equal(features[row], start.detach())
            assert torch.equal(actions[row], F.one_hot(batch["action"][t, b].long(), 2).float())
            expected = observed.stoch[t, b] if target == "stoch" else embed[t, b]
            assert torch.equal(targets[row], expected.detach())
            row += 1
    assert not (features.requires_grad or targets.requires_grad)


def test_no_gradient_from_the_ensemble_loss_reaches_the_world_model():
    model = make(VectorSpec, **p2e())
    batch = random_buffer(VectorSpec).sample_sequences(3, 8)
    _, _, observed, embed = model.loss_and_embed(batch)  # with its graph: a missing detach would show
    assert observed.features.requires_grad
    model.optimizers["model"].zero_grad(set_to_none=True)
    before = model_parameters(model)
    metrics = model.train_disagreement(batch, observed, embed)
    assert math.isfinite(metrics["plan2explore_loss"]) and metrics["plan2explore_disagreement"] > 0
    assert all(p.grad is None for name, p in model.nets.named_parameters() if not name.startswith("plan2explore."))
    assert all(torch.equal(before[k], v) for k, v in model_parameters(model).items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.disagreement.parameters())


def test_the_intrinsic_reward_is_the_variance_across_members():
    model = make(VectorSpec, **p2e(ensemble=5, layers=2, intrinsic_scale=2.0, normalize=False))
    gen = torch.Generator().manual_seed(0)
    state = torch.randn(6, model.feature_dim, generator=gen)
    action = F.one_hot(torch.randint(0, 2, (6,), generator=gen), 2).float()
    ensemble = model.disagreement
    members = []
    for e in range(5):  # each member on its own, the slow way
        x = torch.cat([state, action], -1)
        for i, (weight, bias) in enumerate(zip(ensemble.weights, ensemble.biases, strict=True)):
            x = x @ weight[e] + bias[e, 0]
            if i < len(ensemble.weights) - 1:
                x = F.silu(F.layer_norm(x, x.shape[-1:]))
        members.append(x)
    predictions = torch.stack(members)
    assert torch.allclose(ensemble(state, action), predictions, atol=1e-5)
    mean = predictions.mean(0)
    variance = ((predictions - mean) ** 2).mean(0).mean(-1)
    assert torch.allclose(model.intrinsic_reward(state, action), 2.0 * variance, rtol=1e-4, atol=1e-7)
    assert (variance > 0).all()
    # members that agree give no reward
    with torch.no_grad():
        for param in list(ensemble.weights) + list(ensemble.biases):
            param.copy_(param[:1].expand_as(param))
    assert torch.allclose(model.intrinsic_reward(state, action), torch.zeros(6), atol=1e-10)


def test_the_normalised_reward_divides_by_the_running_mean_of_the_batches_disagreement():
    model = make(VectorSpec, **p2e(intrinsic_scale=2.0))
    assert model.cfg.plan2explore.normalize is True
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(6, model.feature_dim, generator=gen)
    action = torch.rand(6, 2, generator=gen)
    raw = model.disagreement.reward(state, action)
    # before any batch there is no running mean: the raw variance
    torch.testing.assert_close(model.intrinsic_reward(state, action), 2.0 * raw)
    buffer = random_buffer(VectorSpec)
    expected = None
    for _ in range(3):
        batch = buffer.sample_sequences(3, 8)
        with torch.no_grad():
            _, _, observed, embed = model.loss_and_embed(batch)
            features, actions, _ = model.disagreement_data(batch, observed, embed)
            before = model.disagreement(features, actions).var(0, correction=0).mean()
        model.train_disagreement(batch, observed, embed)
        expected = before if expected is None else 0.99 * expected + 0.01 * before
        torch.testing.assert_close(model.disagreement.magnitude, expected, rtol=1e-3, atol=0)
    raw = model.disagreement.reward(state, action)
    magnitude = model.disagreement.magnitude
    assert 0.05 < float(magnitude) < 1e3 and float(magnitude) != float(before)  # a running mean, not the last batch
    torch.testing.assert_close(model.intrinsic_reward(state, action), 2.0 * raw / magnitude)
    assert torch.equal(model.nets.state_dict()["plan2explore.magnitude"], magnitude)  # in checkpoints
    with pytest.raises(ConfigError, match=r"'world_model.plan2explore.normalize' expects a bool .*, got 'yes'"):
        make(VectorSpec, **p2e(normalize="yes"))


# -- the policy -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [DiscreteSpec, ContinuousSpec])
def test_aug_rewards_carry_the_intrinsic_reward(spec):
    model, policy = build(spec)
    starts = model.starts[:5]
    states, actions, _, aug_rewards, _, _ = policy.imagine_with(model, starts, 0, policy.explorer, intrinsic=True)
    assert aug_rewards.shape == (5, 5) and states.shape[0] == 5
    with torch.no_grad():
        expected = torch.stack([model.intrinsic_reward(s, a) for s, a in zip(states, actions, strict=True)])
    torch.testing.assert_close(aug_rewards.detach(), expected, rtol=1e-5, atol=1e-7)
    assert (expected > 0).all()
    *_, plain, _, _ = policy.imagine_with(model, starts, 0, policy.task)
    assert torch.equal(plain, torch.zeros(5, 5))


@pytest.mark.parametrize("spec", [DiscreteSpec, ContinuousSpec])
def test_the_explorer_learns_the_intrinsic_reward_and_the_task_the_extrinsic_one(spec, monkeypatch):
    model, policy = build(spec, imagine_starts=0, extrinsic_scale=0.5, task_horizon=2)
    seen = []
    rollout, losses = model.rollout, policy.losses

    def record_rollout(start, actor_fn, envstep, horizon=None):
        out = rollout(start, actor_fn, envstep, horizon)
        seen.append(("rollout", start, out))
        return out

    def record_losses(ac, states, actions, rewards, continues, outputs):
        seen.append(("losses", ac, rewards, continues))
        return losses(ac, states, actions, rewards, continues, outputs)

    monkeypatch.setattr(model, "rollout", record_rollout)
    monkeypatch.setattr(policy, "losses", record_losses)
    for optimizer in model.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    explore_before = [p.detach().clone() for p in policy.explorer.actor.parameters()]
    metrics = policy.learn(model.imagination_starts())
    (_, _, explored), (_, explorer, explore_rewards, _), (_, branch_starts, branched), \
        (_, task, task_rewards, task_continues) = seen
    assert explorer is policy.explorer and task is policy.task
    states, _, rewards, aug_rewards, dones = explored
    torch.testing.assert_close(explore_rewards, aug_rewards[:-1] + 0.5 * rewards)
    assert metrics["intrinsic_reward"] == pytest.approx(aug_rewards[:-1].mean().item(), rel=1e-5)
    # the task actor takes task_horizon steps from every state the explorer imagined, on the task reward
    assert torch.equal(branch_starts, states[:-1].detach().flatten(0, 1)) and branched[0].shape[0] == 3
    assert torch.equal(task_rewards, branched[2])
    # each branch starts with the chance that the explorer's rollout still runs at its state
    alive = torch.cumprod(torch.cat([model.start_continues.unsqueeze(0), 1.0 - dones]), 0)[:-1]
    torch.testing.assert_close(task_continues[0], alive.flatten().detach())
    torch.testing.assert_close(task_continues[1:], 1.0 - branched[4])
    assert metrics["exploring"] == 1.0 and metrics["explore_actor_loss"] != 0.0
    assert all(math.isfinite(v) for v in metrics.values())
    # both actors moved; the world model and its ensemble took no gradient
    assert any(not torch.equal(a, b) for a, b in zip(explore_before, policy.explorer.actor.parameters(),
                                                      strict=True))
    assert all(p.grad is None for p in model.nets.parameters())


def test_with_replay_starts_the_task_actor_imagines_its_own_rollout_from_the_explorers_starts(monkeypatch):
    model, policy = build(ContinuousSpec, imagine_starts=0, task_starts="replay", task_horizon=3)
    seen = []
    rollout, losses = model.rollout, policy.losses

    def record_rollout(start, actor_fn, envstep, horizon=None):
        out = rollout(start, actor_fn, envstep, horizon)
        seen.append((start, horizon, out))
        return out

    def record_losses(ac, states, actions, rewards, continues, outputs):
        seen.append((ac, rewards, continues))
        return losses(ac, states, actions, rewards, continues, outputs)

    monkeypatch.setattr(model, "rollout", record_rollout)
    monkeypatch.setattr(policy, "losses", record_losses)
    metrics = policy.learn(model.imagination_starts())
    (explore_starts, _, _), (explorer, _, _), (task_starts, task_horizon, task_out), (task, task_rewards,
                                                                                   task_continues) = seen
    assert explorer is policy.explorer and task is policy.task
    # the same starts, the schedule's horizon (4) and not task_horizon, the starts' own continues
    assert torch.equal(task_starts, explore_starts) and task_horizon is None
    assert task_out[0].shape[0] == 5 and task_out[0].shape[1] == explore_starts.shape[0]
    assert torch.equal(task_rewards, task_out[2])
    torch.testing.assert_close(task_continues, torch.cat([model.start_continues.unsqueeze(0), 1.0 - task_out[4]]))
    assert all(math.isfinite(v) for v in metrics.values())


def test_collecting_actor_switches_at_explore_until(monkeypatch):
    def calls(policy):
        counts = {"explore": 0, "task": 0}
        for name, actor in (("explore", policy.explorer.actor), ("task", policy.actor)):
            forward = actor.forward

            def counted(features, name=name, forward=forward):
                counts[name] += 1
                return forward(features)

            monkeypatch.setattr(actor, "forward", counted)
        return counts

    obs = torch.zeros(2, 3)
    for until, explores in ((100, {99: True, 100: False, 500: False}), (None, {0: True, 10**9: True}),
                            (0, {0: False, 100: False})):
        model, policy = build(explore_until=until)
        counts = calls(policy)
        for envstep, expected in explores.items():
            model.envstep = envstep
            assert policy.explores() is expected
            before = dict(counts)
            policy.collect(obs)
            assert counts["explore"] - before["explore"] == int(expected)
            assert counts["task"] - before["task"] == int(not expected)
            policy.act(obs)  # evaluation always runs the task actor
            assert counts["task"] - before["task"] == 1 + int(not expected)


def test_the_model_env_step_the_switch_reads_is_in_its_checkpoint():
    model, _ = build(explore_until=100)
    model.envstep = 150
    other = make(DiscreteSpec, seed=3, **HORIZON_4, **p2e(explore_until=100))
    other.load_state_dict(model.state_dict())
    assert other.envstep == 150


def test_bad_plan2explore_values_are_named():
    for cfg, message in ((dict(target="obs"), "plan2explore.target' must be one of stoch, embed"),
                         (dict(ensemble=1), "plan2explore.ensemble must be >= 2"),
                         (dict(explore_until=-1), "plan2explore.explore_until must be None or an env step"),
                         (dict(explore_until="soon"), "plan2explore.explore_until must be None or an env step"),
                         (dict(task_horizon=0), "plan2explore.task_horizon must be >= 1"),
                         (dict(task_starts="buffer"), "plan2explore.task_starts' must be one of explorer, replay")):
        with pytest.raises(ConfigError, match=message):
            make(VectorSpec, **p2e(**cfg))
    with pytest.raises(ConfigError, match="unknown config key 'world_model.plan2explore.size'"):
        make(VectorSpec, plan2explore={"size": 3})


# -- runs -------------------------------------------------------------------------------------
def test_debug_run_through_the_cli_trains_the_ensemble(tmp_path, capsys):
    assert main(["train", "mountaincar_plan2explore", "--preset", "debug", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert "final eval return" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "mountaincar_plan2explore").iterdir()
    rows = progress_without_wall_time(run_dir)
    losses = [float(row["world_model/plan2explore_loss"]) for row in rows if row["world_model/plan2explore_loss"]]
    assert losses and all(math.isfinite(loss) for loss in losses)
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    assert "explore_actor" in state["policy"]["optimizers"] and "plan2explore" in state["world_model"]["optimizers"]
    assert state["world_model"]["envstep"] == 300  # past explore_until (200): the task actor collected last


def test_plan2explore_run_resumes_exactly_across_the_switch(tmp_path):
    """Stopped while the explorer collects (163 < explore_until 200), continued past the switch."""
    reference = progress_without_wall_time(run("mountaincar_plan2explore", tmp_path / "full")["run_dir"])
    first = run("mountaincar_plan2explore", tmp_path / "stop", env_steps=163)
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=300, show_progress=False).run()
    assert progress_without_wall_time(resumed["run_dir"]) == reference
