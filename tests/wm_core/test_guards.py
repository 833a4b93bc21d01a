import gymnasium as gym
import pytest
import torch
from torch import nn

from tests.fake_envs import BadEnv
from wm_app.cli import main
from wm_core.guards import NonFiniteError, NonFiniteStateError, UpdateGuard, check_state, nonfinite_state


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_non_finite_loss_skips_the_update():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("test", max_consecutive=3)
    before = [p.clone() for p in model.parameters()]
    assert not guard.step("loss", model(torch.ones(1, 2)).sum() * float("nan"), optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert optimizer.state == {} and guard.skipped == 1


def test_non_finite_gradient_skips_the_update():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("test")
    x = torch.zeros(1, 2)
    loss = torch.sqrt(model(x).sum() - model(x).sum())  # finite value (0), infinite gradient
    before = [p.clone() for p in model.parameters()]
    assert not guard.step("sqrt_loss", loss, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("state", [{"skipped": torch.tensor([3]), "consecutive": {}},
                                   {"skipped": 1.5, "consecutive": {}},
                                   {"skipped": 0, "consecutive": {"loss": torch.tensor(2)}},
                                   {"skipped": True, "consecutive": {}}])
def test_a_guard_state_with_counts_that_are_not_ints_is_refused(state):
    guard = UpdateGuard("test")
    with pytest.raises(TypeError, match="guard state counts must be ints"):
        guard.load_state_dict(state)
    guard.load_state_dict({"skipped": 4, "consecutive": {"loss": 2}})
    assert guard.skipped == 4 and guard.consecutive == {"loss": 2}


def test_consecutive_skips_raise_naming_component_and_loss():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("policy 'sac'", max_consecutive=3)
    bad = lambda: model(torch.ones(1, 2)).sum() * float("inf")  # noqa: E731
    good = lambda: model(torch.ones(1, 2)).sum()  # noqa: E731
    guard.step("critic_loss", bad(), optimizer)
    guard.step("critic_loss", bad(), optimizer)
    assert guard.step("critic_loss", good(), optimizer) and guard.consecutive["critic_loss"] == 0
    guard.step("critic_loss", bad(), optimizer)
    guard.step("critic_loss", bad(), optimizer)
    assert guard.step("actor_loss", good(), optimizer)  # another loss succeeding does not reset the count
    with pytest.raises(NonFiniteError, match="policy 'sac': 3 consecutive .*non-finite loss .*'critic_loss'"):
        guard.step("critic_loss", bad(), optimizer)
    assert guard.skipped == 5


gym.register("WorldModelsTestBadEnv-v0", entry_point=BadEnv)


def train_bad_env(tmp_path, mode, bad_step=50):
    return main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--set", "env.id='WorldModelsTestBadEnv-v0'", "--set", f"env.kwargs={{'mode': '{mode}', "
                 f"'bad_step': {bad_step}}}", "--set", "collector.warmup_steps=20", "--set", "learner.batch_size=16"])


@pytest.mark.parametrize("mode,message", [("nan", "returned a non-finite observation at"),
                                          ("raise", "raised in step at")])
def test_bad_env_is_reported_with_id_and_step(mode, message, tmp_path, capsys):
    assert train_bad_env(tmp_path, mode) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "env 'WorldModelsTestBadEnv-v0'" in err and message in err


def test_repeated_non_finite_losses_stop_the_run_with_a_checkpoint(tmp_path, capsys):
    assert train_bad_env(tmp_path, "huge_reward", bad_step=1) == 1
    err = capsys.readouterr().err
    assert "policy 'sac': 10 consecutive updates had a non-finite" in err and "critic_loss" in err
    assert list(tmp_path.glob("pendulum_sac/*/checkpoint.pt"))


def test_groups_step_together_or_not_at_all():
    torch.manual_seed(0)
    first, second = nn.Linear(2, 1), nn.Linear(2, 1)
    opt_first, opt_second = torch.optim.SGD(first.parameters(), lr=0.1), torch.optim.SGD(second.parameters(), lr=0.1)
    guard = UpdateGuard("dreamer")
    x = torch.ones(1, 2)
    before = [p.clone() for p in second.parameters()]
    bad = first(x).sum() + torch.sqrt(second(x).sum() - second(x).sum())  # second's gradient is infinite
    assert not guard.step_groups("actor_critic_loss", bad, [(opt_first, None, 100.0), (opt_second, None, 100.0)])
    assert all(torch.equal(a, b) for a, b in zip(before, second.parameters(), strict=True))
    good = first(x).sum() * 1000 + second(x).sum()
    assert guard.step_groups("actor_critic_loss", good, [(opt_first, None, 1.0), (opt_second, None, None)])
    assert guard.last_grad_norm > 1000  # measured before clipping


def test_a_gradient_that_would_overflow_adams_state_skips_the_update():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("test")
    before = [p.clone() for p in model.parameters()]
    loss = model(torch.ones(1, 2)).sum() * 1e19  # finite gradient, but its square is inf in float32
    assert not guard.step("loss", loss, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert optimizer.state == {} and guard.skipped == 1
    assert guard.step("loss", model(torch.ones(1, 2)).sum() * 1e17, optimizer)  # below the limit: applied
    assert nonfinite_state(model, {"adam": optimizer}) is None


def test_non_finite_parameters_and_optimiser_state_are_named():
    model, optimizer = model_and_optimizer()
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    assert nonfinite_state(model, {"adam": optimizer}) is None
    optimizer.state[model.bias]["exp_avg_sq"].fill_(float("inf"))
    assert nonfinite_state(model, {"adam": optimizer}) == "optimiser 'adam' state 'exp_avg_sq' of parameter 1"
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    with pytest.raises(NonFiniteStateError, match="^world model 'x': parameter 'weight' became non-finite"):
        check_state("world model 'x'", model, {"adam": optimizer})


def test_a_huge_learning_rate_is_blamed_on_the_policy_not_the_env(tmp_path, capsys):
    code = main(["train", "pendulum_sac", "--preset", "debug", "--out", str(tmp_path), "--no-progress",
                 "--set", "policy.actor_lr=1e30"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "policy 'sac' chose a non-finite action at env step 200" in err and "learning rate" in err
    assert "env 'Pendulum-v1'" not in err


def test_a_non_finite_state_is_never_saved_and_an_older_checkpoint_resumes(tmp_path, capsys):
    from workers.pipeline import SerialPipeline
    assert main(["train", "pendulum_sac", "--preset", "debug", "--out", str(tmp_path), "--no-progress",
                 "--env-steps", "300"]) == 0
    run_dir = next(tmp_path.glob("pendulum_sac/*"))
    pipeline = SerialPipeline.resume(run_dir, env_steps=600, show_progress=False)
    saved = (run_dir / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        next(iter(pipeline.policy.nets.parameters())).view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteStateError, match="policy 'sac': parameter '.*' became non-finite"):
        pipeline.save()
    pipeline.collector.close()
    pipeline.evaluator.close()
    assert (run_dir / "checkpoint.pt").read_bytes() == saved
    # a checkpoint holding an inf in the optimiser state is passed over for the one before it
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    torch.save(state, run_dir / "checkpoints" / f"checkpoint_{state['env_step']}.pt")
    for opt_state in state["policy"]["optimizers"]["critic"]["state"].values():
        opt_state["exp_avg_sq"].fill_(float("inf"))
    torch.save(state, run_dir / "checkpoint.pt")
    capsys.readouterr()
    resumed = SerialPipeline.resume(run_dir, env_steps=600, show_progress=False)
    assert resumed.policy.optimizers["critic"].state_dict()["state"][0]["exp_avg_sq"].isfinite().all()
    assert "holds non-finite values: policy 'sac': optimiser 'critic' state 'exp_avg_sq'" in capsys.readouterr().out
    resumed.collector.close()
    resumed.evaluator.close()
