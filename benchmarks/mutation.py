"""Mutation testing: put realistic bugs into the core modules, one at a time, and count how many
the test suite catches.

Each mutation replaces one exact snippet of a core file and runs the test files that should
notice (``pytest -x -q``, with a per-mutation timeout). Mutations are applied to a temporary
copy of the repository, never to the checkout: the committed tree (``git archive HEAD``), or the
working tree with ``--worktree``. The copy is what Python imports (it is first on
``PYTHONPATH``, ahead of the editable install). An original snippet that is no longer in its
file (or is there more than once) is an error, so the list stays honest when code moves.

Not part of the test run (it takes minutes); run it before resolving an issue that touches
these modules and put the score in the note:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mutation.py            # all, prints a table
    .venv/bin/python benchmarks/mutation.py --check                      # snippets only, seconds
    .venv/bin/python benchmarks/mutation.py --only steve --only dreamer  # ids containing a word
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "comparisons", "__pycache__", ".hypothesis",
                                     ".ruff_cache", ".pytest_cache", "*.egg-info", "MUJOCO_LOG.TXT")


@dataclass(frozen=True)
class Mutation:
    """One bug: ``original`` (exactly once in ``path``) becomes ``replacement``.

    Attributes:
        id: short name, unique, ``<module>-<what>``.
        path: file relative to the repository root.
        original: the exact text replaced.
        replacement: what replaces it.
        description: the bug in one line.
        tests: test files (relative to the root) that should catch it.
        equivalent: why the mutation is harmless, where it is (a survivor that needs no test).
    """

    id: str
    path: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    equivalent: str = ""


T_BASE = "tests/worldmodels/test_base.py"
T_SCHED = "tests/worldmodels/test_schedules.py"
T_MBPO = "tests/worldmodels/test_mbpo.py"
T_V3 = "tests/worldmodels/test_dreamerv3.py"
T_STEVE = "tests/worldmodels/test_steve.py"
T_CONFIG = "tests/wm_core/test_config.py"
T_DREAMER = "tests/policies/test_dreamer.py"
T_SAC = "tests/policies/test_sac.py"
T_BUFFER = "tests/workers/test_buffer.py"
T_REGISTRY = "tests/registry/test_registry.py"
T_CLI_PROPS = "tests/test_cli_properties.py"
T_PLANNERS = "tests/policies/test_planners.py"
T_LATENT = "tests/worldmodels/test_latent.py"
T_DMC = "tests/wm_envs/test_dmc.py"
T_IDENTITY = "tests/security/test_identity.py"
T_CHECKPOINT_FAULTS = "tests/faults/test_checkpoint_faults.py"
T_OFFLINE = "tests/workers/test_offline.py"
T_P2E = "tests/worldmodels/test_plan2explore.py"

MUTATIONS: tuple[Mutation, ...] = (
    # -- worldmodels/base.py ----------------------------------------------
    Mutation("base-train-freq-off-by-one", "worldmodels/base.py",
             "if envstep - self.last_train_envstep >= self.cfg.train_freq:",
             "if envstep - self.last_train_envstep > self.cfg.train_freq:",
             "should_train fires one env step late", (T_BASE,)),
    Mutation("base-real-ratio-inverted", "worldmodels/base.py",
             "int(round(batch_size * (1.0 - self.cfg.real_ratio)))",
             "int(round(batch_size * self.cfg.real_ratio))",
             "Dyna batches hold real_ratio imagined instead of real transitions", (T_BASE,)),
    Mutation("base-retain-dropped", "worldmodels/base.py",
             "self.cfg.rollout_batch_size * self.cfg.rollout_retain", "self.cfg.rollout_batch_size",
             "imagination buffer capacity ignores rollout_retain", (T_BASE,)),
    Mutation("base-branches-continue-after-done", "worldmodels/base.py",
             "            obs = next_obs[alive]\n",
             "            obs = next_obs\n",
             "fill_img_buffer keeps rolling out from terminal states", (T_BASE,)),
    Mutation("base-rollout-not-frozen", "worldmodels/base.py",
             "        with frozen(self.nets):\n            for _ in range(horizon):\n"
             "                action, aug_reward = actor_fn(state)\n                reward, state, done",
             "        if True:\n            for _ in range(horizon):\n"
             "                action, aug_reward = actor_fn(state)\n                reward, state, done",
             "Dream rollouts let the actor's loss train the world model", (T_BASE,)),
    Mutation("base-fill-before-training", "worldmodels/base.py",
             "if self.last_train_envstep == 0", "if False",
             "should_fill imagines with an untrained model", (T_BASE,)),
    # -- worldmodels/schedules.py -----------------------------------------
    Mutation("schedules-round-not-floor", "worldmodels/schedules.py",
             "        return int(length)", "        return round(length)",
             "linear schedule rounds instead of flooring", (T_SCHED,)),
    Mutation("schedules-no-upper-clip", "worldmodels/schedules.py",
             "fraction = min(max(fraction, 0.0), 1.0)", "fraction = max(fraction, 0.0)",
             "rollout length keeps growing past rollout_end_step", (T_SCHED,)),
    Mutation("schedules-equal-steps-accepted", "worldmodels/schedules.py",
             "if c.rollout_end_step <= c.rollout_start_step:", "if c.rollout_end_step < c.rollout_start_step:",
             "end step equal to start step accepted (division by zero later)", (T_SCHED,)),
    # -- worldmodels/mbpo.py ----------------------------------------------
    Mutation("mbpo-elites-last-epoch", "worldmodels/mbpo.py",
             'self.ensemble.elites.copy_(final["score"].argsort()[: self.ensemble.elite_size])',
             "self.ensemble.elites.copy_(self.history[-1].argsort()[: self.ensemble.elite_size])",
             "elites chosen on the last epoch's scores instead of the restored best weights", (T_MBPO,)),
    Mutation("mbpo-improvement-sign", "worldmodels/mbpo.py",
             "(best - current) > self.cfg.improvement_threshold * best.abs()",
             "(current - best) > self.cfg.improvement_threshold * best.abs()",
             "early stopping counts a worse holdout score as an improvement", (T_MBPO,)),
    Mutation("mbpo-nll-precision-sign", "worldmodels/mbpo.py",
             "((mean - target).pow(2) * torch.exp(-logvar) + logvar)",
             "((mean - target).pow(2) * torch.exp(logvar) + logvar)",
             "Gaussian NLL multiplies the error by the variance instead of dividing", (T_MBPO,)),
    Mutation("mbpo-no-restore", "worldmodels/mbpo.py",
             "        self._restore_members(snapshot)\n", "",
             "members keep their last weights instead of their best", (T_MBPO,)),
    Mutation("mbpo-split-swapped", "worldmodels/mbpo.py",
             "return perm[n_holdout:], perm[:n_holdout]", "return perm[:n_holdout], perm[n_holdout:]",
             "train on the holdout part and hold out the training part", (T_MBPO,)),
    Mutation("mbpo-logvar-unbounded", "worldmodels/mbpo.py",
             "logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)",
             "logvar = raw_logvar",
             "no soft upper bound on the log-variance", (T_MBPO,)),
    Mutation("mbpo-logvar-units", "worldmodels/mbpo.py",
             "logvar + 2.0 * torch.log(self.target_std)", "logvar + torch.log(self.target_std)",
             "log-variance mapped back to target units with std instead of variance", (T_MBPO,)),
    Mutation("mbpo-delta-not-added", "worldmodels/mbpo.py",
             "return sample[:, 0], inputs[:, : self.obs_dim] + sample[:, 1:], logit",
             "return sample[:, 0], sample[:, 1:], logit",
             "predicted delta returned as the next observation", (T_MBPO,)),
    Mutation("mbpo-refit-rescale-inverted", "worldmodels/mbpo.py",
             "first.weight.mul_((std / self.input_std).view(1, -1, 1))",
             "first.weight.div_((std / self.input_std).view(1, -1, 1))",
             "refitting the input normaliser changes a trained ensemble's predictions", (T_MBPO,)),
    Mutation("mbpo-no-bootstrap", "worldmodels/mbpo.py",
             "            return torch.randint(0, train_size, size, generator=self.generator, device=device)\n",
             "            return torch.arange(train_size, device=device).expand(size)\n",
             "bootstrap on, but every member trains on the same rows", (T_MBPO,)),
    Mutation("mbpo-termination-sign", "worldmodels/mbpo.py",
             "logit > 0", "logit < 0",
             "learned termination head read with the wrong sign", (T_MBPO,)),
    Mutation("mbpo-weight-decay-doubled", "worldmodels/mbpo.py",
             "decay * 0.5 * layer.weight.pow(2).sum()", "decay * layer.weight.pow(2).sum()",
             "weight decay twice as strong as configured (no 1/2)", (T_MBPO,)),
    Mutation("mbpo-max-holdout-ignored", "worldmodels/mbpo.py",
             "min(int(size * self.cfg.holdout_ratio), self.cfg.max_holdout, size - 1)",
             "min(int(size * self.cfg.holdout_ratio), size - 1)",
             "holdout grows with the buffer past max_holdout", (T_MBPO,)),
    # -- worldmodels/rssm.py ----------------------------------------------
    Mutation("rssm-gru-gate-swapped", "worldmodels/rssm.py",
             "return torch.lerp(h, candidate.to(h.dtype), update.to(h.dtype))",
             "return torch.lerp(candidate.to(h.dtype), h, update.to(h.dtype))",
             "GRU update gate keeps the candidate where it should keep the state", (T_V3,)),
    Mutation("rssm-no-restart", "worldmodels/rssm.py",
             "                deter = torch.where(mask, first_deter_rows, deter)\n", "",
             "observe carries the deterministic state across episode starts", (T_V3,)),
    Mutation("rssm-prior-is-posterior", "worldmodels/rssm.py",
             "prior_log_probs=self.prior(deter_seq)", "prior_log_probs=torch.stack(posts)",
             "the prior returned for the KL is the posterior", (T_V3,)),
    Mutation("rssm-unimix-unnormalised", "worldmodels/dreamer_nets.py",
             "return torch.softmax(logits, dim=-1) * (1.0 - unimix) + unimix / logits.shape[-1]",
             "return torch.softmax(logits, dim=-1) * (1.0 - unimix) + unimix",
             "unimix adds the whole mass to every class", (T_V3,)),
    Mutation("rssm-img-step-prior-of-zero-state", "worldmodels/rssm.py",
             "return deter, self.sample(None, generator, probs=self._probs(self.prior_net(deter)))",
             "return deter, self.sample(None, generator, probs=self._probs(self.prior_net(deter.detach() * 0)))",
             "the imagined step draws from the prior of a zero state instead of its new GRU state", (T_V3,)),
    Mutation("rssm-draw-mode-ignores-probs", "worldmodels/dreamer_nets.py",
             "index = (probs if log_probs is None else log_probs).argmax(-1, keepdim=True)",
             "index = (probs if log_probs is None else log_probs).argmin(-1, keepdim=True)",
             "the mode of a categorical is its least likely class", (T_V3,)),
    # -- worldmodels/dreamerv3.py -----------------------------------------
    Mutation("dreamerv3-rollout-states-float32", "worldmodels/dreamerv3.py",
             "            start = start.to(torch.get_autocast_dtype(device_type))\n", "",
             "imagined states stay float32 under bf16 autocast (every consumer casts them again)",
             ("tests/wm_core/test_precision.py",)),
    Mutation("dreamerv3-kl-stop-gradients-swapped", "worldmodels/dreamerv3.py",
             "dyn_kl = categorical_kl(post.detach(), prior)\n        rep_kl = categorical_kl(post, prior.detach())",
             "dyn_kl = categorical_kl(post, prior.detach())\n        rep_kl = categorical_kl(post.detach(), prior)",
             "dynamics and representation KL stop-gradients swapped", (T_V3,)),
    Mutation("dreamerv3-free-nats-clamp-max", "worldmodels/dreamerv3.py",
             "return dyn_kl.clamp_min(free).mean(), rep_kl.clamp_min(free).mean()",
             "return dyn_kl.clamp_max(free).mean(), rep_kl.clamp_max(free).mean()",
             "free nats clip the KL from above", (T_V3,)),
    Mutation("dreamerv3-continue-target-flipped", "worldmodels/dreamerv3.py",
             'cont_target = 1.0 - batch["terminated"].float()', 'cont_target = batch["terminated"].float()',
             "continue head learns the termination flag", (T_V3,)),
    Mutation("dreamerv3-rollout-reward-of-departure", "worldmodels/dreamerv3.py",
             "rewards = self.predict_reward(states_seq[1:])", "rewards = self.predict_reward(states_seq[:-1])",
             "imagined rewards read at the state left instead of the state reached", (T_V3,)),
    Mutation("owed-updates-debt-not-paid", "wm_core/utils.py",
             "    return count, debt - count\n", "    return count, debt\n",
             "owed gradient steps and policy updates are never paid off", (T_V3, "tests/workers/test_pipeline.py")),
    Mutation("dreamerv3-action-scale", "worldmodels/base.py",
             "return ((action.float() - self.bias) / self.scale).clamp(-1.0, 1.0)",
             "return ((action.float() - self.bias) * self.scale).clamp(-1.0, 1.0)",
             "Box actions scaled the wrong way into [-1, 1]", (T_V3, T_DREAMER)),
    Mutation("dreamerv3-first-action-kept", "worldmodels/dreamerv3.py",
             "            prev_action = torch.where(mask, torch.zeros_like(prev_action), prev_action)\n", "",
             "an episode's first filter step sees the previous episode's last action", (T_DREAMER,)),
    # -- worldmodels/steve.py ---------------------------------------------
    Mutation("steve-variance-members-only", "worldmodels/steve.py",
             "variance = candidates.flatten(1, 2).var(1, unbiased=False)",
             "variance = clipped.var(1, unbiased=False)",
             "STEVE's variance over members only instead of members x critics", (T_STEVE,)),
    Mutation("steve-alive-not-updated", "worldmodels/steve.py",
             "        alive = alive * (1.0 - dones[h])\n", "",
             "expanded targets keep counting after an imagined termination", (T_STEVE,)),
    Mutation("steve-discount-exponent", "worldmodels/steve.py",
             "discount = gamma ** (h + 1)", "discount = gamma ** h",
             "expanded targets discounted one step too little", (T_STEVE,)),
    Mutation("steve-clip-with-max", "worldmodels/steve.py",
             "values.min(dim=2, keepdim=True).values", "values.max(dim=2, keepdim=True).values",
             "the critics' maximum instead of the clipped double-Q minimum", (T_STEVE,)),
    Mutation("steve-absolute-next-state", "worldmodels/steve.py",
             "next_state = state + mean[..., 1:]", "next_state = mean[..., 1:]",
             "imagined states are the predicted deltas", (T_STEVE,)),
    Mutation("steve-worst-elites", "worldmodels/steve.py",
             "return self.ensemble.elites[: self.cfg.expansion_members]",
             "return self.ensemble.elites.flip(0)[: self.cfg.expansion_members]",
             "the worst elites expand targets", (T_STEVE,)),
    # -- wm_core/config.py --------------------------------------------
    Mutation("config-base-wins", "wm_core/config.py",
             "for klass in reversed(cls.__mro__):", "for klass in cls.__mro__:",
             "default_config lets a base class's value win over a subclass's", (T_CONFIG,)),
    Mutation("config-unknown-key-accepted", "wm_core/config.py",
             "            if _is_free_form(defaults):", "            if True:",
             "unknown config keys are accepted silently", (T_CONFIG,)),
    Mutation("config-int-from-whole-float", "wm_core/config.py",
             "        if isinstance(value, float) and value.is_integer():\n            return int(value)\n", "",
             "an int key given 3.0 is an error instead of 3", (T_CONFIG, T_CLI_PROPS)),
    Mutation("config-float-kept-int", "wm_core/config.py",
             "        return float(value)\n", "        return value\n",
             "a float key given an int keeps the int", (T_CONFIG, T_CLI_PROPS)),
    Mutation("config-open-range-closed", "wm_core/config.py",
             "too_low = low is not None and (node <= low if low_open else node < low)",
             "too_low = low is not None and node < low",
             "an open lower bound (e.g. tau > 0) accepts the bound itself", (T_CONFIG, T_SAC)),
    Mutation("config-typed-section-merged", "wm_core/config.py",
             'and current["type"] != value["type"]', 'and current["type"] == value["type"]',
             "a subclass's section of another type is merged key by key instead of replacing the base's",
             (T_CONFIG,)),
    # -- policies/dreamer.py ----------------------------------------------
    Mutation("dreamer-weights-shifted", "policies/dreamer.py",
             "weights = (torch.cumprod(c.gamma * continues, 0) / c.gamma).detach()[:-1]",
             "weights = (torch.cumprod(c.gamma * continues, 0) / c.gamma).detach()[1:]",
             "return weights shifted by one imagined step", (T_DREAMER,)),
    Mutation("dreamer-lambda-bootstrap-value", "policies/dreamer.py",
             "targets = rewards + discounts * (1.0 - lambda_) * values[1:]",
             "targets = rewards + discounts * (1.0 - lambda_) * values[:-1]",
             "lambda-returns bootstrap from the value of the state left", (T_DREAMER,)),
    Mutation("dreamer-no-scale-floor", "policies/dreamer.py",
             "return torch.clamp_min(self.high - self.low, self.floor)", "return self.high - self.low",
             "small return ranges are blown up (no floor)", (T_DREAMER,)),
    Mutation("dreamer-slow-critic-rate", "policies/dreamer.py",
             "slow.lerp_(fast, self.cfg.slow_critic_fraction)",
             "slow.lerp_(fast, 1.0 - self.cfg.slow_critic_fraction)",
             "slow critic moves at 1 - rate", (T_DREAMER,)),
    Mutation("dreamer-advantage-baseline", "policies/dreamer.py",
             "advantage = ((returns - values[:-1]) / scale).detach()",
             "advantage = ((returns - values[1:]) / scale).detach()",
             "REINFORCE baseline is the next state's value", (T_DREAMER,)),
    Mutation("dreamer-entropy-penalised", "policies/dreamer.py",
             "loss = -(weights * (objective + self.cfg.entropy_coef * entropy)).mean()",
             "loss = -(weights * (objective - self.cfg.entropy_coef * entropy)).mean()",
             "entropy is penalised instead of rewarded", (T_DREAMER,)),
    Mutation("dreamer-return-low-decay", "policies/dreamer.py",
             "self.low.lerp_(low, 1.0 - self.decay)", "self.low.lerp_(low, self.decay)",
             "the low return percentile moves at the decay instead of 1 - decay", (T_DREAMER,)),
    # -- policies/sac.py --------------------------------------------------
    Mutation("sac-bootstrap-on-truncation", "policies/sac.py",
             'batch["reward"] + self.cfg.gamma * (1.0 - batch["terminated"]) * soft_value',
             'batch["reward"] + self.cfg.gamma * (1.0 - batch["terminated"] - batch["truncated"]) * soft_value',
             "a time-limit truncation stops bootstrapping", (T_SAC,)),
    Mutation("sac-max-of-critics", "policies/sac.py",
             "soft_value = torch.min(q1, q2) - self.alpha * next_log_prob",
             "soft_value = torch.max(q1, q2) - self.alpha * next_log_prob",
             "target uses the larger of the twin critics", (T_SAC,)),
    Mutation("sac-polyak-rate", "policies/sac.py",
             "target.lerp_(source, tau)", "target.lerp_(source, 1.0 - tau)",
             "target critics move at 1 - tau", (T_SAC,)),
    Mutation("sac-alpha-loss-sign", "policies/sac.py",
             "alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()",
             "alpha_loss = (self.log_alpha * (log_prob + self.target_entropy)).mean()",
             "temperature moves away from the target entropy", (T_SAC,)),
    Mutation("sac-squash-correction-sign", "policies/sac.py",
             "return action, gaussian_log_prob - squash_correction",
             "return action, gaussian_log_prob + squash_correction",
             "tanh log-probability correction added instead of subtracted", (T_SAC,)),
    Mutation("sac-targets-every-update", "policies/sac.py",
             "if self.train_iter % self.cfg.target_update_every == 0:", "if True:",
             "target critics updated at every step whatever target_update_every says", (T_SAC,)),
    # -- workers/buffer.py ------------------------------------------------
    Mutation("buffer-is-first-ignores-truncation", "workers/buffer.py",
             'ended = out["terminated"].bool() | out["truncated"].bool()', 'ended = out["terminated"].bool()',
             "is_first ignores time-limit truncation", (T_BUFFER,)),
    Mutation("buffer-no-first-at-sequence-start", "workers/buffer.py",
             "        is_first[0] = True\n", "",
             "a sampled sequence does not start from the initial state", (T_BUFFER,)),
    Mutation("buffer-sample-empty-rows", "workers/buffer.py",
             "index = self.rng.integers(0, self.size, size=int(batch_size))",
             "index = self.rng.integers(0, self.capacity, size=int(batch_size))",
             "sample draws rows that were never written", (T_BUFFER,)),
    Mutation("buffer-sequence-crosses-write-position", "workers/buffer.py",
             "oldest_step = (newest_step - steps_stored + 1) % capacity_steps",
             "oldest_step = (newest_step - steps_stored) % capacity_steps",
             "sequences start one step before the oldest stored one", (T_BUFFER,)),
    Mutation("buffer-resize-keeps-oldest", "workers/buffer.py",
             "order = (self.pos - keep + np.arange(keep)) % self.capacity", "order = np.arange(keep)",
             "shrinking the buffer keeps the oldest rows instead of the newest", (T_BUFFER,)),
    # -- registry/registry.py ---------------------------------------------
    Mutation("registry-single-string-rejected", "registry/registry.py",
             "    if isinstance(value, str):\n        return [value]\n", "",
             "import_names given as one string is rejected", (T_REGISTRY,)),
    Mutation("registry-no-entry-points-on-miss", "registry/registry.py",
             "        if name not in self._entries:\n            load_entry_points()\n", "",
             "installed plugins are not loaded when a lookup misses", (T_REGISTRY,)),
    Mutation("registry-duplicates-replace", "registry/registry.py",
             "if existing is not None and existing is not target and not force:",
             "if existing is not None and existing is not target and force:",
             "a duplicate name silently replaces the registered one", (T_REGISTRY,)),
    # -- policies/planners.py ---------------------------------------------
    Mutation("planners-shift-by-two", "policies/planners.py",
             "return torch.cat([plans[:, 1:], self._initial_plan(plans.shape[0])[:, :1]], dim=1)",
             "return torch.cat([plans[:, 2:], self._initial_plan(plans.shape[0])[:, :2]], dim=1)",
             "the warm-start plan is shifted by two steps instead of one", (T_PLANNERS,)),
    Mutation("planners-lowest-elites", "policies/planners.py",
             "elite_returns, index = returns.topk(self.cfg.elites, dim=1)",
             "elite_returns, index = returns.topk(self.cfg.elites, dim=1, largest=False)",
             "elites are the candidates with the lowest predicted return", (T_PLANNERS,)),
    Mutation("planners-momentum-swapped", "policies/planners.py",
             "clamp_min(float(self.cfg.min_std))\n"
             "        return momentum * mean + (1 - momentum) * new_mean, momentum * std + (1 - momentum) * new_std",
             "clamp_min(float(self.cfg.min_std))\n"
             "        return (1 - momentum) * mean + momentum * new_mean, (1 - momentum) * std + momentum * new_std",
             "CEM momentum weights the new elites' statistics instead of the previous distribution",
             (T_PLANNERS,)),
    Mutation("planners-mppi-no-temperature", "policies/planners.py",
             "return torch.softmax(float(self.cfg.temperature) * (elite_returns - elite_returns[:, :1]), dim=1)",
             "return torch.softmax(elite_returns - elite_returns[:, :1], dim=1)",
             "MPPI weights the elites by exp(return) without the temperature", (T_PLANNERS,)),
    Mutation("latent-q-dropout-in-planning", "worldmodels/latent.py",
             "        return self.twohot.mean(net(torch.cat([state, unit_action], dim=-1), members, dropout=dropout,",
             "        dropout = dropout or float(self.cfg.q_dropout)\n"
             "        return self.twohot.mean(net(torch.cat([state, unit_action], dim=-1), members, dropout=dropout,",
             "q_dropout also drops units when planning's value and the Q targets are computed",
             ("tests/worldmodels/test_latent.py",)),
    Mutation("planners-elite-sample-takes-the-best", "policies/planners.py",
             "index = torch.multinomial(self.elite_weights(elite_returns), 1, generator=self.rng)[:, 0]",
             "index = elite_returns.argmax(dim=1)",
             "action_choice=elite_sample always takes the best elite instead of drawing one", (T_PLANNERS,)),
    Mutation("planners-plan-std-ignored", "policies/planners.py",
             "noise = self.first_std if self.cfg.collect_plan_std else float(self.cfg.collect_noise)",
             "noise = float(self.cfg.collect_noise)",
             "collect_plan_std is ignored: collect adds collect_noise", (T_PLANNERS,)),
    Mutation("planners-no-discount", "policies/planners.py",
             "            discount *= float(self.cfg.gamma)\n", "",
             "predicted rewards within the horizon are not discounted", (T_PLANNERS,)),
    Mutation("planners-alive-not-updated", "policies/planners.py",
             "            alive = alive * (~done).float()\n", "",
             "returns keep counting rewards after a predicted termination", (T_PLANNERS,)),
    Mutation("planners-terminal-reward-dropped", "policies/planners.py",
             "            total = total + discount * alive * reward.float()\n"
             "            alive = alive * (~done).float()\n",
             "            alive = alive * (~done).float()\n"
             "            total = total + discount * alive * reward.float()\n",
             "the reward of the step that terminates is dropped (alive updated first)", (T_PLANNERS,)),
    Mutation("planners-bootstrap-after-termination", "policies/planners.py",
             "total = total + discount * alive * self.state_value(state).float()",
             "total = total + discount * self.state_value(state).float()",
             "the value bootstrap is added to candidates that terminated", (T_PLANNERS,)),
    Mutation("planners-ts-inf-members-redrawn", "policies/planners.py",
             "            reward, state, done = self.model_step(state, self.model_actions(sequences, t), members)\n",
             "            if members is not None:\n"
             "                members = members[torch.randperm(rows, generator=self.rng, device=self.device)]\n"
             "            reward, state, done = self.model_step(state, self.model_actions(sequences, t), members)\n",
             "TS-infinity particles switch ensemble members at every step", (T_PLANNERS,)),
    Mutation("planners-colored-noise-variance", "policies/planners.py",
             "weights = torch.full_like(scale, 4.0)", "weights = torch.full_like(scale, 2.0)",
             "colored noise normalised with 2 s_k^2 per bin instead of 4 s_k^2 (variance not 1)", (T_PLANNERS,)),
    Mutation("planners-icem-keeps-worst-elites", "policies/planners.py",
             "return elites[:, :keep].clone() if keep else None",
             "return elites[:, -keep:].clone() if keep else None",
             "iCEM carries the worst of the elites instead of the best", (T_PLANNERS,)),
    # -- worldmodels/latent.py --------------------------------------------
    Mutation("latent-rho-off-by-one", "worldmodels/latent.py",
             "        torch.arange(losses.shape[0], device=losses.device))",
             "        torch.arange(1, losses.shape[0] + 1, device=losses.device))",
             "rollout step t weighted by rho^(t+1) instead of rho^t", (T_LATENT,)),
    Mutation("latent-n-step-window-not-cut", "worldmodels/latent.py",
             "stop = torch.minimum(torch.minimum(start + n_step, first_end[:horizon] + 1), "
             "torch.full_like(start, length))",
             "stop = torch.minimum(start + n_step, torch.full_like(start, length))",
             "n-step reward sums run past the end of an episode", (T_LATENT,)),
    Mutation("latent-n-step-bootstrap-past-termination", "worldmodels/latent.py",
             "alive = 1.0 - terminated.double().gather(0, last)", "alive = 1.0",
             "n-step targets bootstrap from a terminal step's next observation", (T_LATENT,)),
    Mutation("latent-n-step-truncation-terminates", "worldmodels/latent.py",
             "alive = 1.0 - terminated.double().gather(0, last)", "alive = 1.0 - ended.double().gather(0, last)",
             "a time-limit truncation stops n-step bootstrapping", (T_LATENT,)),
    Mutation("latent-validity-ignored", "worldmodels/latent.py",
             "valid = targets.valid[:horizon]", "valid = torch.ones_like(targets.valid[:horizon])",
             "model losses count rollout steps past the end of an episode", (T_LATENT,)),
    Mutation("latent-validity-ending-step-invalid", "worldmodels/latent.py",
             "valid[1:] = torch.cumprod(1.0 - ended[:-1], dim=0)", "valid = torch.cumprod(1.0 - ended, dim=0)",
             "the step that ends an episode is masked out too", (T_LATENT,)),
    Mutation("latent-polyak-rate", "worldmodels/latent.py",
             "target.lerp_(online, float(self.cfg.tau))", "target.lerp_(online, 1.0 - float(self.cfg.tau))",
             "target Qs move at 1 - tau", (T_LATENT,)),
    Mutation("latent-simnorm-axis", "worldmodels/latent.py",
             "return (exps / exps.sum(dim=-1, keepdim=True)).reshape(shape)",
             "return (exps / exps.sum(dim=-2, keepdim=True)).reshape(shape)",
             "SimNorm's softmax runs across the groups instead of within each", (T_LATENT,)),
    Mutation("latent-target-max-of-qs", "worldmodels/latent.py",
             "return self.q_values(state, unit, members, target=True).min(0).values",
             "return self.q_values(state, unit, members, target=True).max(0).values",
             "Q targets bootstrap from the larger of two target Qs", (T_LATENT,)),
    Mutation("latent-consistency-target-current-obs", "worldmodels/latent.py",
             'next_states = self.encode(batch["next_obs"])', 'next_states = self.encode(batch["obs"])',
             "latent consistency and bootstrap targets encode the observation left, not the one reached",
             (T_LATENT,)),
    # -- wm_envs/dmc.py -----------------------------------------------
    Mutation("dmc-truncation-as-termination", "wm_envs/dmc.py",
             "terminated = bool(time_step.last() and time_step.discount == 0.0)",
             "terminated = bool(time_step.last())",
             "the suite's time limit is reported as termination", (T_DMC,)),
    Mutation("dmc-repeat-reward-not-summed", "wm_envs/dmc.py",
             "reward += float(time_step.reward or 0.0)", "reward = float(time_step.reward or 0.0)",
             "action repeat returns the last control step's reward instead of the sum", (T_DMC,)),
    Mutation("dmc-observation-keys-sorted", "wm_envs/dmc.py",
             "self.observation_keys = list(self._env.observation_spec().keys())",
             "self.observation_keys = sorted(self._env.observation_spec().keys())",
             "observation parts flattened in sorted key order instead of the task's", (T_DMC,)),
    Mutation("dmc-repeat-past-episode-end", "wm_envs/dmc.py",
             "            if time_step.last():\n                break\n", "",
             "action repeat keeps stepping after the episode's last step (the suite restarts it)", (T_DMC,)),
    Mutation("dmc-physics-seed-not-from-np-random", "wm_envs/dmc.py",
             "np.random.RandomState(int(self.np_random.integers(2**31 - 1)))", "np.random.RandomState(seed)",
             "the initial state is seeded from reset's seed, so reset() without one is not reproducible",
             (T_DMC,)),
    # -- workers/checkpoint.py --------------------------------------------
    Mutation("checkpoint-fingerprint-ignores-seed", "workers/checkpoint.py",
             "if k not in RESUMABLE_KEYS_IGNORED}", 'if k not in (*RESUMABLE_KEYS_IGNORED, "seed")}',
             "the config fingerprint ignores the seed, so an altered stored seed goes unnoticed",
             (T_IDENTITY, T_CHECKPOINT_FAULTS)),
    Mutation("checkpoint-difference-skips-sections", "workers/checkpoint.py",
             "found = first_difference(left[key], right[key], name)",
             "found = None if isinstance(left[key], dict) else first_difference(left[key], right[key], name)",
             "first_difference never looks inside nested sections (a hand-edited policy.gamma passes)",
             (T_IDENTITY, T_CHECKPOINT_FAULTS)),
    Mutation("checkpoint-nested-budget-ignored", "workers/checkpoint.py",
             "if key in RESUMABLE_KEYS_IGNORED and not prefix:", "if key in RESUMABLE_KEYS_IGNORED:",
             "an env_steps key inside a section is ignored like the run's budget", (T_IDENTITY, T_CHECKPOINT_FAULTS)),
    Mutation("checkpoint-current-format-refused", "workers/checkpoint.py",
             'if state["format"] > FORMAT:', 'if state["format"] >= FORMAT:',
             "a checkpoint of the current format is refused as too new", (T_IDENTITY, T_CHECKPOINT_FAULTS)),
    # -- workers/pipeline.py -------------------------------------------------
    Mutation("pipeline-clock-checkpoint-in-hours", "workers/pipeline.py",
             ">= 60.0 * minutes", ">= 3600.0 * minutes",
             "checkpoint_minutes is read as hours: a killed run loses 60 times more than promised",
             ("tests/workers/test_resume.py::test_checkpoints_by_the_clock_are_kept_and_change_nothing",)),
    # -- offline training, MOPO, Plan2Explore -------------------------------
    Mutation("dataset-ring-order-ignored", "workers/dataset.py",
             "order = np.arange(size) if size < capacity else (pos + np.arange(size)) % capacity",
             "order = np.arange(size)",
             "a run's wrapped replay ring is exported in storage order, not oldest first", (T_OFFLINE,)),
    Mutation("offline-learning-starts-kept", "workers/run_config.py",
             "cfg.world_model.learning_starts = 0", "pass",
             "offline, a model waits learning_starts update steps before it learns", (T_OFFLINE,)),
    Mutation("mbpo-penalty-added", "worldmodels/base.py",
             "reward = reward - penalty", "reward = reward + penalty",
             "MOPO's penalty raises imagined rewards instead of lowering them", (T_OFFLINE,)),
    Mutation("mbpo-max-std-averaged", "worldmodels/mbpo.py",
             "return torch.exp(0.5 * logvar).norm(dim=-1).amax(dim=0)",
             "return torch.exp(0.5 * logvar).norm(dim=-1).mean(dim=0)",
             "max_std uncertainty averages the elites instead of taking the largest", (T_OFFLINE,)),
    Mutation("plan2explore-std-not-variance", "worldmodels/plan2explore.py",
             "variance = self(features, action).var(0, correction=0).mean(-1)",
             "variance = self(features, action).std(0, correction=0).mean(-1)",
             "the intrinsic reward is the members' standard deviation, not their variance", (T_P2E,)),
    Mutation("plan2explore-norm-decay-swapped", "worldmodels/plan2explore.py",
             "torch.lerp(self.magnitude, value, 1.0 - NORM_DECAY)", "torch.lerp(self.magnitude, value, NORM_DECAY)",
             "the disagreement's running mean follows the last batch instead of averaging", (T_P2E,)),
    Mutation("dreamer-backprop-actor-always-detached", "policies/dreamer.py",
             'seen = state.detach() if self.cfg.actor_backprop == "dreamerv3" else state',
             "seen = state.detach()",
             "the full backprop estimator cuts the gradient through the actor's input", (T_DREAMER,)),
    Mutation("dreamer-backprop-baseline-always-detached", "policies/dreamer.py",
             'baseline = values[:-1] if self.cfg.actor_backprop == "dreamerv3" else values[:-1].detach()',
             "baseline = values[:-1].detach()",
             "the dreamerv3 estimator drops the baseline's gradient", (T_DREAMER,)),
    Mutation("plan2explore-replay-task-takes-task-horizon", "policies/dreamer.py",
             "task_from, task_first, task_horizon = starts, start_continues, None",
             "task_from, task_first, task_horizon = starts, start_continues, explore.task_horizon",
             "with replay starts the task rollout takes task_horizon steps, not the schedule's", (T_P2E,)),
    Mutation("plan2explore-task-continues-from-explorer", "policies/dreamer.py",
             "task_continues = torch.cat([task_first.unsqueeze(0), 1.0 - task_dones])",
             "task_continues = torch.cat([task_first.unsqueeze(0), 1.0 - dones])",
             "the task rollout's continues come from the explorer's rollout", (T_P2E,)),
    Mutation("latent-value-draws-members-first", "worldmodels/latent.py",
             "        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)\n"
             "        return noise, self.two_q(generator)",
             "        members = self.two_q(generator)\n"
             "        return torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype), "
             "members",
             "the planning bootstrap draws its two Qs before the actor's noise (other numbers than before)",
             (T_LATENT,)),
    Mutation("planner-compiled-loop-ignored", "policies/planners.py",
             "            optimize = self.optimize if self.compiled_optimize is None else self.compiled_optimize",
             "            optimize = self.optimize",
             "policy.compile is accepted but plans run eagerly", (T_PLANNERS,)),
    Mutation("planner-evaluating-by-generator-identity", "policies/planners.py",
             "return self.model.policy_action(state, deterministic=self.evaluating, generator=self.rng)",
             "return self.model.policy_action(state, deterministic=self.rng is self.act_generator, generator=self.rng)",
             "the prior's mode is an identity test of generators, which compiled plans do not re-check",
             (T_LATENT,)),
    Mutation("check-choice-accepts-anything", "wm_core/config.py",
             "    if isinstance(value, str) and value in choices:\n        return",
             "    if isinstance(value, str):\n        return",
             "a misspelt choice passes the config check", (T_CONFIG,)),
)


def locate(mutation: Mutation, root: Path = ROOT) -> str:
    """The file's text; raises ValueError unless ``original`` occurs exactly once in it."""
    text = (root / mutation.path).read_text()
    count = text.count(mutation.original)
    if count != 1:
        where = "is not in" if count == 0 else f"occurs {count} times in"
        raise ValueError(f"mutation '{mutation.id}': the original snippet {where} {mutation.path} "
                         f"(update the mutation list):\n{mutation.original}")
    return text


def check_all(mutations: tuple[Mutation, ...] = MUTATIONS, root: Path = ROOT) -> None:
    """Every id unique, every original snippet present once, every test file present (a test may
    be named by its pytest id, ``file::test``)."""
    ids = [m.id for m in mutations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate mutation ids: {', '.join(duplicates)}")
    for mutation in mutations:
        locate(mutation, root)
        missing = [t for t in mutation.tests if not (root / t.split("::")[0]).is_file()]  # a file or a test id
        if missing:
            raise ValueError(f"mutation '{mutation.id}': no test file {', '.join(missing)}")


def copy_tree(copy: Path, worktree: bool) -> None:
    """The repository's files at ``copy``: the working tree, or the committed tree at HEAD."""
    if worktree:
        shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
        return
    copy.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive, check=True)


def pytest_env(copy: Path) -> dict[str, str]:
    """The environment that makes Python import the copy, one thread per process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(copy), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """``pytest -x -q`` on ``tests`` in ``copy``: 'passed', 'failed' or 'timeout', seconds, and the output's end."""
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                cwd=copy, env=pytest_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    outcome = "passed" if result.returncode == 0 else "failed"
    return outcome, time.perf_counter() - start, (result.stdout + result.stderr)[-3000:]


def check_imports_copy(copy: Path) -> None:
    """Fail unless the packages Python imports from ``copy`` are the copy's (not the checkout's)."""
    code = "import worldmodels, policies, workers, registry; print(worldmodels.__file__, policies.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=pytest_env(copy), capture_output=True,
                         text=True, check=True).stdout
    if any(not Path(path).resolve().is_relative_to(copy.resolve()) for path in out.split()):
        raise RuntimeError(f"the mutated copy is not what Python imports: {out.strip()}")


def run_mutation(copy: Path, mutation: Mutation, timeout: float) -> tuple[str, float]:
    """Apply ``mutation`` to the copy, run its tests, and put the file back whatever happens."""
    target = copy / mutation.path
    original_text = locate(mutation, copy)
    try:
        target.write_text(original_text.replace(mutation.original, mutation.replacement))
        outcome, seconds, _ = run_tests(copy, mutation.tests, timeout)
    finally:
        target.write_text(original_text)
    return {"passed": "survived", "failed": "caught", "timeout": "caught (timeout)"}[outcome], seconds


def report(rows: list[tuple[Mutation, str, float]]) -> str:
    width = max(len(m.id) for m, _, _ in rows)
    lines = [f"{'mutation':<{width}}  {'result':<16}  {'s':>5}  description", "-" * (width + 60)]
    for mutation, result, seconds in rows:
        lines.append(f"{mutation.id:<{width}}  {result:<16}  {seconds:5.1f}  {mutation.description}")
    caught = sum(result.startswith("caught") for _, result, _ in rows)
    lines.append(f"\ncaught {caught} of {len(rows)} mutations ({100.0 * caught / len(rows):.1f}%)")
    survivors = [(m, r) for m, r, _ in rows if r == "survived"]
    for mutation, _ in survivors:
        why = f"equivalent: {mutation.equivalent}" if mutation.equivalent else "NO TEST CATCHES IT"
        lines.append(f"  survived {mutation.id}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="run the mutations whose id contains WORD (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutation (default 300)")
    parser.add_argument("--check", action="store_true", help="only check that every snippet is found")
    parser.add_argument("--worktree", action="store_true",
                        help="mutate a copy of the working tree (uncommitted changes included) instead of HEAD")
    args = parser.parse_args(argv)
    check_all()
    chosen = tuple(m for m in MUTATIONS if not args.only or any(word in m.id for word in args.only))
    if args.check:
        print(f"{len(MUTATIONS)} mutations, every original snippet found once")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copy = Path(tmp) / "repo"
        copy_tree(copy, args.worktree)
        check_all(chosen, copy)
        check_imports_copy(copy)
        baseline_tests = tuple(sorted({t for m in chosen for t in m.tests}))
        outcome, baseline_seconds, output = run_tests(copy, baseline_tests, args.timeout * 4)
        print(f"baseline (no mutation): {outcome} in {baseline_seconds:.0f} s: {' '.join(baseline_tests)}",
              flush=True)
        if outcome != "passed":
            print(f"{output}\nthe tests fail without any mutation: fix them first", file=sys.stderr)
            return 2
        rows = []
        start = time.perf_counter()
        for mutation in chosen:
            result, seconds = run_mutation(copy, mutation, args.timeout)
            print(f"  {mutation.id}: {result} ({seconds:.1f} s)", flush=True)
            rows.append((mutation, result, seconds))
    print(report(rows))
    print(f"({time.perf_counter() - start:.0f} s for the mutations, after a {baseline_seconds:.0f} s baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
