import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError
from workers.buffer import ReplayBuffer
from worldmodels.base import ActionCodec
from worldmodels.dreamer_nets import (
    ConvDecoder,
    ConvEncoder,
    TwoHot,
    categorical_kl,
    sample_one_hot,
    symexp,
    symlog,
    unimix_log_probs,
)
from worldmodels.dreamerv3 import SIZES, DreamerV3WorldModel, resolve_sizes
from worldmodels.rssm import RSSM, LayerNormGRUCell

TINY = {"type": "dreamerv3", "deter": 16, "units": 16, "stoch": 4, "classes": 4, "batch_size": 3,
        "sequence_length": 8, "learning_starts": 0, "pretrain_steps": 2}


class VectorSpec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)


class ImageSpec:
    observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def make(spec=VectorSpec, seed=0, **cfg):
    return WORLD_MODEL_REGISTRY.build({**TINY, **cfg}, spec(), None, seed=seed)


def random_buffer(spec, steps=60, episode=13, seed=0):
    """A single-slot buffer of random transitions; an episode ends (terminated) every ``episode`` steps."""
    rng = np.random.default_rng(seed)
    obs_space, action_space = spec.observation_space, spec.action_space
    discrete = hasattr(action_space, "n")
    buffer = ReplayBuffer(1000, obs_space.shape, () if discrete else action_space.shape,
                          obs_dtype=obs_space.dtype, action_dtype=np.int64 if discrete else np.float32, seed=seed)
    for t in range(steps):
        if obs_space.dtype == np.uint8:
            obs, next_obs = (rng.integers(0, 256, (1, *obs_space.shape), dtype=np.uint8) for _ in range(2))
        else:
            obs, next_obs = (rng.normal(size=(1, *obs_space.shape)).astype(np.float32) for _ in range(2))
        action = rng.integers(0, 2, 1) if discrete else rng.uniform(-2, 2, (1, 1)).astype(np.float32)
        buffer.push(obs, action, rng.normal(size=1), next_obs, np.array([t % episode == episode - 1]),
                    np.array([False]))
    return buffer


def test_symlog_symexp_round_trip():
    x = torch.tensor([-1e6, -100.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 100.0, 1e6], dtype=torch.float64)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-10)
    expected = torch.tensor([-np.log(2), 0.0, np.log(2)], dtype=torch.float32)
    assert torch.allclose(symlog(torch.tensor([-1.0, 0.0, 1.0])), expected)


def test_twohot_encode_decode_round_trip():
    twohot = TwoHot(255)
    target = torch.tensor([-3000.0, -7.5, -1.0, 0.0, 0.3, 1.0, 42.0, 12345.0])
    weights = twohot.encode(target)
    assert weights.shape == (8, 255)
    assert torch.allclose(weights.sum(-1), torch.ones(8))
    assert ((weights > 0).sum(-1) <= 2).all()
    assert torch.allclose(symexp(weights @ twohot.bins), target, rtol=1e-4, atol=1e-5)
    # logits whose softmax is the encoding decode to the target; log_prob is the weighted log-softmax
    assert torch.allclose(twohot.mean(torch.log(weights + 1e-12)), target, rtol=1e-4, atol=1e-5)
    random_logits = torch.randn(8, 255)
    expected = (weights * torch.log_softmax(random_logits, -1)).sum(-1)
    assert torch.allclose(twohot.log_prob(random_logits, target), expected, atol=1e-5)
    # targets beyond the last bin clip to it
    assert twohot.encode(torch.tensor([1e12]))[0, -1] == 1.0


def test_unimix_and_one_hot_samples():
    logits = torch.tensor([[10.0, 0.0, -10.0, -10.0]])
    log_probs = unimix_log_probs(logits, 0.01)
    assert log_probs.exp().min() >= 0.01 / 4 - 1e-7 and torch.allclose(log_probs.exp().sum(-1), torch.ones(1))
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    draws = sample_one_hot(probs.log().expand(40_000, 4), torch.Generator().manual_seed(0))
    assert torch.equal(draws.sum(-1), torch.ones(40_000))
    assert torch.allclose(draws.mean(0), probs, atol=0.01)
    assert torch.equal(sample_one_hot(probs.log()[None], None), torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    # probabilities alone (a step that only draws skips the log) give the same draws and mode
    for generator_seed in (0, 1):
        with_log = sample_one_hot(probs.log().expand(50, 4), torch.Generator().manual_seed(generator_seed),
                                  probs=probs.expand(50, 4))
        alone = sample_one_hot(None, torch.Generator().manual_seed(generator_seed), probs=probs.expand(50, 4))
        assert torch.equal(with_log, alone)
    assert torch.equal(sample_one_hot(None, None, probs=probs[None]), torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="needs log_probs or probs"):
        sample_one_hot(None, torch.Generator())
    # straight-through: the sample carries the probabilities' gradient
    leaf = torch.zeros(1, 4, requires_grad=True)
    (sample_one_hot(torch.log_softmax(leaf, -1), torch.Generator()) * torch.arange(4.0)).sum().backward()
    assert leaf.grad.abs().sum() > 0


def test_categorical_kl_is_zero_for_equal_and_positive_otherwise():
    a = torch.log_softmax(torch.randn(5, 4, 3), -1)
    b = torch.log_softmax(torch.randn(5, 4, 3), -1)
    assert torch.allclose(categorical_kl(a, a), torch.zeros(5), atol=1e-6)
    assert (categorical_kl(a, b) > 0).all() and categorical_kl(a, b).shape == (5,)


def rssm_inputs(steps=6, batch=3, embed_dim=5, action_dim=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(steps, batch, dtype=torch.bool)
    is_first[0] = True
    is_first[3, 1] = True
    embed = torch.randn(steps, batch, embed_dim, generator=gen)
    action = torch.randn(steps, batch, action_dim, generator=gen)
    first_embed = torch.randn(int(is_first.sum()), embed_dim, generator=gen)
    return embed, action, is_first, first_embed


def test_rssm_observe_and_img_step_shapes():
    rssm = RSSM(action_dim=2, embed_dim=5, deter=8, stoch=4, classes=3, units=16)
    embed, action, is_first, first_embed = rssm_inputs()
    out = rssm.observe(embed, action, is_first, first_embed, torch.Generator().manual_seed(0))
    assert out.deter.shape == (6, 3, 8) and out.stoch.shape == (6, 3, 12)
    assert out.post_log_probs.shape == out.prior_log_probs.shape == (6, 3, 4, 3)
    assert out.features.shape == (6, 3, 20) and out.first_features.shape == (4, 20)
    assert out.first_post_log_probs.shape == out.first_prior_log_probs.shape == (4, 4, 3)
    # stoch is one-hot per variable
    assert torch.allclose(out.stoch.unflatten(-1, (4, 3)).sum(-1), torch.ones(6, 3, 4))
    assert set(out.stoch.detach().unique().tolist()) <= {0.0, 1.0}
    deter, stoch = rssm.img_step(out.deter[-1], out.stoch[-1], torch.randn(3, 2), torch.Generator())
    assert deter.shape == (3, 8) and stoch.shape == (3, 12)
    # the step draws from the prior of its new GRU state (the draw from its probabilities alone),
    # and filtering from the posterior given the embedding: the same draws as from log_probs
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in (rssm.prior_net[-1], rssm.post_net[-1]):  # distributions far from uniform
            layer.weight.mul_(20.0)
        prev_deter, act, obs = torch.randn(64, 8, generator=gen), torch.randn(64, 2, generator=gen), \
            torch.randn(64, 5, generator=gen)
        prev_stoch = rssm.sample(rssm.prior(prev_deter), gen)
        expected_deter = rssm.deter_step(prev_deter, prev_stoch, act)
        deter, stoch = rssm.img_step(prev_deter, prev_stoch, act, torch.Generator().manual_seed(3))
        torch.testing.assert_close(deter, expected_deter)
        assert torch.equal(stoch, rssm.sample(rssm.prior(expected_deter), torch.Generator().manual_seed(3)))
        _, post = rssm.posterior(expected_deter, rssm.post_embed(obs))
        assert torch.equal(rssm.obs_step(prev_deter, prev_stoch, act, obs, torch.Generator().manual_seed(4))[1],
                           rssm.sample(post, torch.Generator().manual_seed(4)))
        assert torch.equal(rssm.obs_step(prev_deter, prev_stoch, act, obs, None)[1], rssm.sample(post, None))
    with pytest.raises(ValueError, match="is_first\\[0\\]"):
        rssm.observe(embed, action, torch.zeros(6, 3, dtype=torch.bool), first_embed[:0], None)


def test_rssm_observe_restarts_at_episode_starts():
    rssm = RSSM(action_dim=2, embed_dim=5, deter=8, stoch=4, classes=3, units=16)
    embed, action, is_first, first_embed = rssm_inputs()
    base = rssm.observe(embed, action, is_first, first_embed, None)
    changed_embed, changed_action = embed.clone(), action.clone()
    changed_embed[:3] += 5.0  # everything before row 1's restart at t=3
    changed_action[:3] -= 1.0
    changed = rssm.observe(changed_embed, changed_action, is_first, first_embed, None)
    assert torch.equal(changed.deter[3:, 1], base.deter[3:, 1])  # row 1 forgot its past at t=3
    assert not torch.allclose(changed.deter[3:, 0], base.deter[3:, 0])  # row 0 did not


def test_gru_update_gate_keeps_the_state_at_first():
    cell = LayerNormGRUCell(input_dim=3, hidden_dim=4)
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    with torch.no_grad():
        parts = cell.norm(cell.linear(torch.cat([x, h], -1)))
        reset, update = torch.sigmoid(parts[:, :4]), torch.sigmoid(parts[:, 4:8])
        expected = (1 - update) * h + update * torch.tanh(reset * parts[:, 8:])
        torch.testing.assert_close(cell(x, h), expected)
        # with zero weights the LayerNorm gives its biases: reset 1/2, update sigmoid(-1), candidate 0,
        # so the cell keeps 1 - sigmoid(-1) = 73% of its state
        cell.linear.weight.zero_()
        torch.testing.assert_close(cell(x, h), h * (1 - torch.sigmoid(torch.tensor(-1.0))))


def test_observe_reads_prior_and_posterior_off_each_step_s_state():
    rssm = RSSM(action_dim=2, embed_dim=5, deter=8, stoch=4, classes=3, units=16)
    embed, action, is_first, first_embed = rssm_inputs()
    out = rssm.observe(embed, action, is_first, first_embed, None)
    with torch.no_grad():
        # the prior sees the deterministic state only; the posterior also the observation's embedding
        torch.testing.assert_close(out.prior_log_probs, rssm.prior(out.deter))
        torch.testing.assert_close(out.post_log_probs, rssm.posterior(out.deter, rssm.post_embed(embed))[1])
        # without a generator the stochastic state is the posterior's mode
        modes = out.post_log_probs.argmax(-1)
        torch.testing.assert_close(out.stoch, torch.nn.functional.one_hot(modes, 3).float().flatten(-2))
        # a step's deterministic state follows from the previous step's state and this step's action
        torch.testing.assert_close(out.deter[2, 0], rssm.deter_step(out.deter[1, :1], out.stoch[1, :1],
                                                                    action[2, :1])[0])


def test_free_nats_clip_the_kl_terms():
    model = make(free_nats=1.0)
    kl = torch.tensor([0.2, 0.5, 3.0], requires_grad=True)
    dyn, rep = model.kl_losses(kl, kl)
    assert dyn.item() == pytest.approx((1.0 + 1.0 + 3.0) / 3)
    dyn.backward()
    assert kl.grad.tolist() == pytest.approx([0.0, 0.0, 1 / 3])  # below the free nats: no gradient


def only(term, **cfg):
    """A model whose loss is the one ``term`` (scale 1), free nats 0 so every KL value counts."""
    scales = {key: 0.0 for key in ("recon_scale", "reward_scale", "cont_scale", "dyn_scale", "rep_scale")}
    scales[f"{term}_scale"] = 1.0
    return make(free_nats=0.0, **scales, **cfg)


def trained_nets(model, batch):
    """The names of ``model.nets`` whose parameters get a non-zero gradient from ``model.loss``."""
    model.optimizers["model"].zero_grad(set_to_none=True)
    model.loss(batch)[0].backward()
    return {name for name, net in model.nets.items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())}


def test_each_loss_term_trains_its_own_networks():
    batch = random_buffer(VectorSpec).sample_sequences(3, 8)
    # the heads' losses reach the encoder and the RSSM through the features, and no other head
    assert trained_nets(only("recon"), batch) == {"decoder", "encoder", "rssm"}
    # (the reward head's output layer starts at zero, so no gradient passes it at first)
    assert trained_nets(only("reward"), batch) == {"reward_head"}
    assert trained_nets(only("cont"), batch) == {"cont_head", "encoder", "rssm"}
    assert trained_nets(only("dyn"), batch) == {"encoder", "rssm"}
    assert trained_nets(only("rep"), batch) == {"encoder", "rssm"}


def leaf_log_probs(model, monkeypatch):
    """Make ``model.rssm.observe`` return its posterior and prior log-probabilities as leaf tensors."""
    leaves = {}
    observe = model.rssm.observe

    def observe_with_leaves(*args):
        observed = observe(*args)
        for name in ("post_log_probs", "prior_log_probs", "first_post_log_probs", "first_prior_log_probs"):
            leaves[name] = getattr(observed, name).detach().requires_grad_(True)
            setattr(observed, name, leaves[name])
        return observed

    monkeypatch.setattr(model.rssm, "observe", observe_with_leaves)
    return leaves


def nonzero_grad(tensor):
    return tensor.grad is not None and bool(tensor.grad.abs().sum() > 0)


@pytest.mark.parametrize("term, trains, stopped", [("dyn", "prior", "post"), ("rep", "post", "prior")])
def test_kl_balance_stop_gradients(term, trains, stopped, monkeypatch):
    """The dynamics term KL(sg(post) || prior) trains the prior only; the representation term
    KL(post || sg(prior)) the posterior only."""
    model = only(term)
    leaves = leaf_log_probs(model, monkeypatch)
    loss, metrics, _ = model.loss(random_buffer(VectorSpec).sample_sequences(3, 8))
    loss.backward()
    for prefix in ("", "first_"):
        assert nonzero_grad(leaves[f"{prefix}{trains}_log_probs"])
        assert not nonzero_grad(leaves[f"{prefix}{stopped}_log_probs"])
    assert loss.item() == pytest.approx(metrics["kl"], rel=1e-5)  # free nats 0: the loss is the mean KL


def test_loss_is_the_scaled_sum_of_its_terms_and_training_lowers_it():
    model = make(lr=1e-3, free_nats=0.0, recon_scale=2.0, reward_scale=3.0, cont_scale=0.5)
    buffer = random_buffer(VectorSpec)
    batch = buffer.sample_sequences(3, 8)
    loss, metrics, observed = model.loss(batch)
    with torch.no_grad():  # the head losses, by hand: continue = 1 - terminated, twohot rewards
        features = observed.features
        continues = 1.0 - batch["terminated"]
        cont_logits = model.cont_head(features).squeeze(-1)
        cont_loss = -(continues * F.logsigmoid(cont_logits) + (1 - continues) * F.logsigmoid(-cont_logits)).mean()
        reward_loss = -(model.twohot.encode(batch["reward"]) * F.log_softmax(model.reward_head(features), -1)).sum(-1)
    assert metrics["cont_loss"] == pytest.approx(cont_loss.item(), rel=1e-5)
    assert metrics["reward_loss"] == pytest.approx(reward_loss.mean().item(), rel=1e-5)
    # with no free nats, the dynamics and representation terms both equal the mean KL
    expected = (2.0 * metrics["recon_loss"] + 3.0 * metrics["reward_loss"] + 0.5 * metrics["cont_loss"]
                + (0.5 + 0.1) * metrics["kl"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    first = model.train_step(batch)
    for _ in range(60):
        last = model.train_step(batch)
    assert last["loss"] < first["loss"] - 1.0
    assert model.starts.shape == (8 * 3, model.feature_dim) and not model.starts.requires_grad
    assert torch.equal(model.start_continues, 1.0 - batch["terminated"].flatten())


def test_replay_ratio_and_pretraining():
    model = make(replay_ratio=0.5, pretrain_steps=5, learning_starts=20, log_every=1)
    buffer = random_buffer(VectorSpec, steps=40)
    assert not model.should_train(10)
    assert model.should_train(20) and model.owed_steps(20) == 5
    assert [model.owed_steps(step) for step in range(21, 27)] == [0, 1, 0, 1, 0, 1]
    assert model.owed_steps(36) == 5  # ten env steps at once
    fresh = make(replay_ratio=0.5, pretrain_steps=3, learning_starts=0, log_every=1)
    metrics = fresh.train(buffer, envstep=40, train_iter=0)
    assert fresh.gradient_steps == 3 and metrics["gradient_steps"] == 3.0
    short = make()
    assert short.train(random_buffer(VectorSpec, steps=5), envstep=5, train_iter=0) == {}  # not a full sequence


def test_same_seed_same_numbers():
    def losses(seed):
        model = make(seed=seed)
        buffer = random_buffer(VectorSpec)
        return [model.train_step(buffer.sample_sequences(3, 8))["loss"] for _ in range(3)]

    assert losses(0) == losses(0)
    assert losses(0) != losses(1)


def test_image_observations_use_the_cnn_on_unit_pixels():
    model = make(ImageSpec, cnn_depth=4)
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder, ConvDecoder)
    batch = random_buffer(ImageSpec, steps=30).sample_sequences(2, 8)
    assert batch["obs"].dtype == torch.uint8
    seen_by_encoder = []
    model.encoder.net[0].register_forward_pre_hook(lambda module, args: seen_by_encoder.append(args[0]))
    loss, metrics, observed = model.loss(batch)
    first = batch["is_first"].bool()
    frames = torch.cat([batch["next_obs"].flatten(0, 1), batch["obs"][first]])  # every frame the loss sees
    units = frames.float() / 255.0 - 0.5  # uint8 0..255 -> [-0.5, 0.5]
    torch.testing.assert_close(seen_by_encoder[0], units.permute(0, 3, 1, 2))
    features = torch.cat([observed.features.flatten(0, 1), observed.first_features])
    with torch.no_grad():
        recon = (model.decoder(features) - units).square().sum((1, 2, 3)).mean()
    assert metrics["recon_loss"] == pytest.approx(recon.item(), rel=1e-5)


def test_rollout_follows_the_latent_dynamics_and_heads_with_no_world_model_gradient():
    model = make()
    with torch.no_grad():  # a reward head that is not zero everywhere (it starts at zero)
        model.reward_head[-1].weight.normal_(generator=torch.Generator().manual_seed(0))
    model.optimizers["model"].zero_grad(set_to_none=True)
    actor = torch.nn.Linear(model.feature_dim, 2)

    def actor_fn(state):
        return torch.softmax(actor(state), -1), state.sum(-1)

    start = torch.randn(5, model.feature_dim, generator=torch.Generator().manual_seed(1))
    generator_state = model.generator.get_state()
    states, actions, rewards, aug, dones = model.rollout(start, actor_fn, envstep=0, horizon=4)
    assert states.shape == (5, 5, model.feature_dim) and actions.shape == (5, 5, 2)
    model.generator.set_state(generator_state)  # replay the same latent draws step by step
    with torch.no_grad():
        state = start
        for t in range(4):
            torch.testing.assert_close(actions[t], torch.softmax(actor(state), -1))
            state = model.latent_step(state, actions[t])
            torch.testing.assert_close(states[t + 1], state)
        torch.testing.assert_close(actions[4], torch.softmax(actor(state), -1))
        # step t's reward and continue belong to the state it arrives at
        torch.testing.assert_close(rewards, model.predict_reward(states[1:]))
        torch.testing.assert_close(dones, 1.0 - model.predict_continue(states[1:]))
        assert not torch.allclose(rewards, model.predict_reward(states[:-1]))
    torch.testing.assert_close(aug, states.sum(-1))
    (rewards.sum() + states.sum()).backward()
    assert actor.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.nets.parameters())
    assert all(p.requires_grad for p in model.nets.parameters())


def test_action_codec_maps_env_actions_to_model_actions_and_back():
    box = ActionCodec(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)),
                      torch.device("cpu"))
    env_actions = torch.tensor([[-2.0, 0.0], [1.0, 7.5], [4.0, 10.0]])
    model_actions = box.to_model(env_actions)
    torch.testing.assert_close(model_actions, torch.tensor([[-1.0, -1.0], [0.5, 0.5], [1.0, 1.0]]))  # clipped
    torch.testing.assert_close(box.to_env(model_actions), torch.tensor([[-2.0, 0.0], [1.0, 7.5], [2.0, 10.0]]))
    discrete = ActionCodec(gym.spaces.Discrete(3), torch.device("cpu"))
    torch.testing.assert_close(discrete.to_model(torch.tensor([2, 0])), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    assert discrete.to_env(torch.tensor([[0.1, 0.7, 0.2]])).tolist() == [1]


def test_sizes_are_presets_with_overrides():
    defaults = DreamerV3WorldModel.default_config()
    assert resolve_sizes({**defaults, "size": "S"}) == SIZES["S"]
    assert resolve_sizes({**defaults, "size": "XL", "deter": 32}) == {**SIZES["XL"], "deter": 32}
    assert make().sizes == {**SIZES["XXS"], "deter": 16, "units": 16, "stoch": 4, "classes": 4}
    with pytest.raises(ConfigError, match="'world_model.size' must be one of"):
        make(size="XXXL")
    with pytest.raises(ConfigError, match="unknown config key 'world_model.detr'"):
        make(detr=3)


def test_bad_spaces_are_named():
    class BoxObs3D:
        observation_space = gym.spaces.Box(0, 1, (4, 4, 3), np.float32)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ConfigError, match="vector or HxWxC uint8 image"):
        make(BoxObs3D)


@pytest.mark.parametrize("spec", [VectorSpec, ImageSpec])
def test_open_loop_predictions(spec):
    model = make(spec, cnn_depth=4)
    buffer = random_buffer(spec, steps=12)
    obs = torch.as_tensor(buffer.data["obs"][:12])
    actions = torch.as_tensor(buffer.data["action"][:11])
    predicted = model.open_loop(obs, actions, context=4)
    assert predicted.shape == obs.shape and predicted.dtype == obs.dtype
    assert torch.equal(predicted, model.open_loop(obs, actions, context=4))  # modes: deterministic
    # after the context the observations are not looked at
    changed = obs.clone()
    changed[4:] = obs[4:] // 2 if spec is ImageSpec else obs[4:] + 3.0
    assert torch.equal(model.open_loop(changed, actions, context=4), predicted)
    with pytest.raises(ValueError, match="12 observations need 11 actions"):
        model.open_loop(obs, actions[:5])
    if spec is VectorSpec:  # float64 observations (MuJoCo envs return them) predict the same
        assert torch.equal(model.open_loop(obs.double(), actions, context=4), predicted)


def test_non_finite_world_model_loss_skips_the_step():
    model = make()
    batch = random_buffer(VectorSpec).sample_sequences(3, 8)
    batch["reward"][2, 1] = float("nan")
    before = [p.clone() for p in model.nets.parameters()]
    metrics = model.train_step(batch)
    assert metrics["nonfinite_skipped"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.nets.parameters(), strict=True))
