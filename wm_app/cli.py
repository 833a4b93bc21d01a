"""The ``worldmodels`` command line: train (online or --offline), eval, compare, export, config, list."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from registry import ALL_REGISTRIES, RegistryError
from wm_core.config import ConfigError, to_plain
from workers.checkpoint import CheckpointError, RunOutputError
from worldmodels import __version__

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, RegistryError, CheckpointError, RunOutputError)


class UsageError(Exception):
    """A command-line argument that is not valid."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


def _add_config_args(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    parser.add_argument("config", nargs="?" if optional else None,
                        help="a shipped config name (see 'worldmodels list') or a path to a .py file")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. --set policy.actor_lr=1e-3 (repeatable)")
    parser.add_argument("--preset", default=None, help="apply a preset of the config, e.g. debug")
    parser.add_argument("--seed", type=_int, default=None, help="random seed")
    parser.add_argument("--env-steps", type=_positive_int, default=None, help="total env steps of the run")


DREAM_CONTEXT = 5  # observations the model filters before --dream shows it imagining
DREAM_STEPS = 50  # steps of the episode --dream shows


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="worldmodels", description="Model-based reinforcement learning from config files.")
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_train(commands)
    _add_config_args(commands.add_parser("config", help="print the resolved config as JSON"))
    _add_eval(commands)
    _add_compare(commands)
    _add_export(commands)
    commands.add_parser("list", help="list shipped configs and every registered name")
    return parser


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train an agent from a config", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="every shipped config has a 'debug' preset that runs in seconds; examples:\n"
               "  worldmodels train pendulum_mbpo\n"
               "  worldmodels train pendulum_sac --preset debug --seed 1 --env-steps 600\n"
               "  worldmodels train dmc_cartpole_swingup_sac --set env.id=dm_control/reacher-easy-v0\n"
               "  worldmodels train --resume runs/pendulum_mbpo/<stamp>_s0 --env-steps 10000\n"
               "  worldmodels train pendulum_sac --offline data.npz --updates 20000   # no env steps")
    _add_config_args(train, optional=True)
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue a stopped run from its newest checkpoint (with --env-steps: a new total)")
    train.add_argument("--trust-plugins", action="store_true",
                       help="with --resume: import the plugin code (import_names) the run's config names")
    train.add_argument("--out", default="runs", help="parent directory of run directories (default: runs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--offline", metavar="DATASET", default=None,
                       help="train from a fixed dataset with no env steps: an .npz file (see 'worldmodels export'), "
                            "a run directory (its replay buffer) or a Minari dataset directory on disk")
    train.add_argument("--updates", type=_positive_int, default=None,
                       help="with --offline (or --resume of an offline run): update steps of the run (default "
                            "offline.updates, 10000)")


def _add_export(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a run's replay buffer as an .npz dataset (for --offline)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="the .npz holds obs, action, reward, next_obs, terminated, truncated (one row per transition,\n"
               "oldest first) and row_width (rows per env step); example:\n"
               "  worldmodels export runs/pendulum_sac/<stamp>_s0 --out pendulum_sac.npz")
    export.add_argument("run", metavar="RUN", help="a run directory (runs/<exp_name>/<stamp>)")
    export.add_argument("--out", required=True, metavar="FILE", help="the .npz file to write")


def _add_eval(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a saved run deterministically")
    evaluate.add_argument("run", metavar="RUN", help="a run directory (runs/<exp_name>/<stamp>)")
    evaluate.add_argument("--episodes", type=_positive_int, default=10, help="episodes (default 10)")
    evaluate.add_argument("--trust-plugins", action="store_true",
                          help="import the plugin code (import_names) the run's config names")
    evaluate.add_argument("--seed", type=_int, default=0, help="episode i resets with seed + i")
    evaluate.add_argument("--video", metavar="FILE", default=None, help="write the first episode as a .gif")
    evaluate.add_argument("--dream", metavar="FILE", default=None,
                          help=f"Dream models: the first {DREAM_STEPS} steps of the first episode beside what the "
                               f"model predicts after seeing {DREAM_CONTEXT} of them (.gif for image observations, "
                               ".png plot for vectors)")


def _add_compare(commands: Any) -> None:
    comp = commands.add_parser(
        "compare", help="run configs and variants over seeds; write a table with bootstrap intervals, CSV, plots",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="a ROW is a config or a variant of one: CONFIG:key=value[:key=value...] (':', '.' and '=' need no\n"
               "shell quoting; quote a value with brackets, spaces or quotes, as for --set). Each row is named\n"
               "by what differs; its runs live in OUT/runs/<variant>/seed<k>, so the same command resumes.\n"
               "examples:\n"
               "  worldmodels compare pendulum_sac pendulum_mbpo --seeds 5\n"
               "  worldmodels compare pendulum_mbpo:world_model.rollout_length_scheduler.rollout_length=1 \\\n"
               "      pendulum_mbpo:world_model.rollout_length_scheduler.rollout_length=5 --seeds 5\n"
               "  worldmodels compare pendulum_mbpo --grid world_model.rollout_length_scheduler.rollout_length=1,3,5\n"
               "  worldmodels compare pendulum_sac --grid 'policy.hidden_sizes=[64,64],[256,256]' \\\n"
               "      --grid policy.gamma=0.9,0.99\n"
               "  worldmodels compare dmc_cartpole_swingup_sac dmc_walker_walk_sac   # DMC scores: return / 1000\n"
               "  worldmodels compare --report docs/comparisons/pendulum/results.csv  # re-render, no runs")
    comp.add_argument("configs", nargs="*", metavar="ROW", help="shipped config names or .py paths, or variants "
                                                                 "CONFIG:key=value[:key=value...]")
    comp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                      help="run every ROW with each value (repeatable: the cartesian product; commas inside "
                           "[], {}, () or quotes belong to a value)")
    comp.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3; 5 or more for "
                                                                      "intervals worth reading)")
    comp.add_argument("--only-seed", dest="only_seeds", type=_int, action="append", default=None, metavar="K",
                      help="run only seed K of 0..N-1 (repeatable), e.g. the seeds whose runs another "
                           "machine did not finish")
    comp.add_argument("--env-steps", type=_positive_int, default=None, help="env steps of every run")
    comp.add_argument("--preset", default=None, help="apply this preset to every config")
    comp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="override a value in every config (repeatable)")
    comp.add_argument("--normalize", action="append", default=[], metavar="TASK=LOW,HIGH",
                      help="score = (return - LOW) / (HIGH - LOW) for aggregating over several tasks "
                           "(repeatable; DMC tasks default to 0,1000)")
    comp.add_argument("--report", metavar="RESULTS_CSV", default=None,
                      help="no runs: re-render summary.md and plots from a results.csv (or its folder)")
    comp.add_argument("--workers", type=_positive_int, default=None,
                      help="runs at once (default: one per CPU core)")
    comp.add_argument("--threads", type=_positive_int, default=None,
                      help="torch threads of each run (default 1; --set num_threads=N also works)")
    comp.add_argument("--backend", choices=("local", "ray"), default="local",
                      help="local processes or Ray tasks (pip install 'worldmodels[ray]')")
    comp.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    comp.add_argument("--out", default=None, help="output directory (default: comparisons/<configs>; "
                                                  "with --report: the CSV's folder)")


def _train_pipeline(args: argparse.Namespace):
    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    if args.resume is None:
        if args.config is None:
            raise UsageError("train needs a CONFIG or --resume RUN_DIR (see 'worldmodels train --help')")
        if args.offline is None and args.updates is not None:
            raise UsageError("--updates is the budget of an offline run: use it with --offline DATASET "
                             "(an online run counts --env-steps)")
        if args.offline is not None and args.env_steps is not None:
            raise UsageError("--offline takes no env steps: give its budget as --updates N, not --env-steps")
        sets = list(args.sets)
        if args.offline is not None:
            sets.append(f"offline.dataset={os.path.abspath(args.offline)!r}")
            if args.updates is not None:
                sets.append(f"offline.updates={args.updates}")
        cfg = compose_config(args.config, args.preset, sets, args.seed, args.env_steps)
        return SerialPipeline(cfg, out_dir=args.out, show_progress=not args.no_progress)
    extra = [name for name, value in (("CONFIG", args.config), ("--set", args.sets), ("--preset", args.preset),
                                      ("--seed", args.seed), ("--offline", args.offline)) if value]
    if extra:
        raise UsageError(f"--resume continues a run with its saved config; drop {', '.join(extra)} "
                         "(only --env-steps, or --updates for an offline run, may change)")
    if args.env_steps is not None and args.updates is not None:
        raise UsageError("give one new budget: --env-steps for an online run, --updates for an offline one")
    budget = args.updates if args.updates is not None else args.env_steps
    return SerialPipeline.resume(args.resume, budget, show_progress=not args.no_progress,
                                 trust_plugins=args.trust_plugins)


def cmd_train(args: argparse.Namespace) -> int:
    result = _train_pipeline(args).run()
    unit = "update step" if result["offline"] else "env step"
    if result["failure"] is not None:
        if result["checkpoint_step"] is None:
            where = "no checkpoint was written before the failure, so the run starts again from the beginning"
        else:
            where = f"its checkpoint at {unit} {result['checkpoint_step']} can be resumed with --resume"
        print(one_line(f"worldmodels: error: {result['failure']} (run directory: {result['run_dir']}; {where})"),
              file=sys.stderr)
        return 1
    if result["stopped_by"] is not None:
        print(f"stopped by {result['stopped_by']} at {unit} {result['env_steps']}; checkpoint saved. "
              f"Resume with: worldmodels train --resume {result['run_dir']}")
        return 130 if result["stopped_by"] == "SIGINT" else 143
    if result["offline"]:
        print(f"finished offline at update step {result['env_steps']} in {result['wall_time']:.1f} s "
              f"({result['train_iter']} policy updates in all, no env steps)")
    elif result["start_env_step"]:
        print(f"finished at env step {result['env_steps']}: {result['env_steps'] - result['start_env_step']} env "
              f"steps in this session in {result['wall_time']:.1f} s ({result['env_steps_per_s']:.0f} env steps/s), "
              f"{result['train_iter']} policy updates in all")
    else:
        print(f"finished {result['env_steps']} env steps in {result['wall_time']:.1f} s "
              f"({result['env_steps_per_s']:.0f} env steps/s, {result['train_iter']} policy updates)")
    episodes = result["eval_episodes"]
    print(f"final eval return {result['eval_return_mean']:.1f} ± {result['eval_return_std']:.1f} "
          f"over {episodes} episode{'s' if episodes != 1 else ''}")
    print(f"run directory: {result['run_dir']}")
    return 0


def _dream_model(agent, path: str):
    """The run's world model if it can write ``--dream FILE`` to ``path``; a UsageError otherwise."""
    model = agent.world_model
    if model is None or not hasattr(model, "open_loop"):
        kind = "no world model" if model is None else f"world model '{model.cfg.type}'"
        raise UsageError(f"--dream needs a run with a Dream world model that decodes observations "
                         f"(e.g. 'dreamerv3'); this run has {kind}")
    suffix = ".gif" if model.image else ".png"
    if not path.lower().endswith(suffix):
        what = "image observations: a .gif" if model.image else "vector observations: a .png plot"
        raise UsageError(f"--dream for {what}; give a path ending in {suffix}, got '{path}'")
    return model


def write_dream(model, trajectory: dict, path: str) -> str:
    """Decode the model's open-loop prediction of a recorded episode and write it beside the real one."""
    import numpy as np
    import torch

    from wm_app.video import dream_frames, plot_dream, write_gif

    steps = min(DREAM_STEPS, len(trajectory["obs"]))
    real = np.stack(trajectory["obs"][:steps])
    actions = torch.as_tensor(np.stack(trajectory["action"][: steps - 1]))
    dreamed = model.open_loop(torch.as_tensor(real), actions, context=DREAM_CONTEXT).cpu().numpy()
    if model.image:
        frames = dream_frames(real, dreamed, DREAM_CONTEXT)
        return f"{write_gif(frames, path, fps=10)} ({steps} frames: real left, model right)"
    if steps > DREAM_CONTEXT:
        error = float(np.abs(dreamed[DREAM_CONTEXT:] - real[DREAM_CONTEXT:]).mean())
        detail = f"imagined steps off by {error:.3f} on average per observation value"
    else:
        detail = f"the episode ended within the {DREAM_CONTEXT} observed steps: no imagined steps"
    return f"{plot_dream(real, dreamed, DREAM_CONTEXT, path)} ({steps} steps; {detail})"


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from wm_app.agent import load_agent
    from wm_app.video import write_gif
    from wm_envs.make import make_env
    from workers.evaluator import Evaluator

    if args.video is not None and not args.video.lower().endswith(".gif"):
        raise UsageError(f"--video writes a GIF: give a path ending in .gif, got '{args.video}'")
    agent = load_agent(args.run, trust_plugins=args.trust_plugins)
    dream_model = _dream_model(agent, args.dream) if args.dream is not None else None
    env = make_env(agent.config.env, render_mode="rgb_array" if args.video else None)
    returns, frames, trajectory = [], [], {}
    try:
        for episode in range(args.episodes):
            first = episode == 0
            total, _ = Evaluator.run_episode(agent.policy, env, args.seed + episode,
                                             frames=frames if args.video and first else None,
                                             env_id=agent.config.env.id,
                                             trajectory=trajectory if dream_model is not None and first else None)
            returns.append(total)
    finally:
        env.close()
    print(f"eval return {np.mean(returns):.1f} ± {np.std(returns):.1f} over {args.episodes} "
          f"episode{'s' if args.episodes != 1 else ''} "
          f"(min {np.min(returns):.1f}, max {np.max(returns):.1f})")
    if args.video:
        print(f"video: {write_gif(frames, args.video)} ({len(frames)} frames)")
    if dream_model is not None:
        print(f"dream: {write_dream(dream_model, trajectory, args.dream)}")
    return 0


def _compare_report(args: argparse.Namespace) -> int:
    from wm_app.compare import report

    runs_only = [flag for flag, value in (("ROW", args.configs), ("--grid", args.grid), ("--set", args.sets),
                                          ("--preset", args.preset), ("--env-steps", args.env_steps)) if value]
    if runs_only:
        raise UsageError(f"--report re-renders a results.csv without running; drop {', '.join(runs_only)}")
    out = report(args.report, normalize=args.normalize, out=args.out)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'summary.md'} and the plots in {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from wm_app.compare import compare

    if args.report is not None:
        return _compare_report(args)
    if not args.configs:
        raise UsageError("compare needs at least one ROW (a config or CONFIG:key=value), or --report RESULTS_CSV "
                         "(see 'worldmodels compare --help')")
    finished, total = [], []

    def announce(rows: list, runs: int) -> None:
        total.append(runs)
        which = (f"seed(s) {', '.join(map(str, sorted(set(args.only_seeds))))} of {args.seeds}" if args.only_seeds
                 else f"{args.seeds} seed(s)")
        print(f"comparing {', '.join(row.label for row in rows)} over {which}: {runs} runs", flush=True)

    def progress(result: dict) -> None:
        finished.append(result)
        head = f"[{len(finished)}/{total[0]}] {result['config']} seed {result['seed']}:"
        if "error" in result:
            print(f"{head} FAILED: {result['error']}", flush=True)
        elif result.get("skipped"):
            print(f"{head} finished earlier, skipped", flush=True)
        else:
            print(f"{head} final eval return {result['rows'][-1]['eval_return_mean']:.1f} "
                  f"after {result['env_steps']} env steps, {result['wall_time']:.0f} s", flush=True)

    def evaluation(row: dict) -> None:
        print(f"    {row['config']} seed {row['seed']}: eval return {row['eval_return_mean']:.1f} at "
              f"{int(row['env_step']):,} env steps, {row['wall_time']:.0f} s", flush=True)

    out = compare(args.configs, args.seeds, grid=args.grid, normalize=args.normalize, env_steps=args.env_steps,
                  preset=args.preset, sets=args.sets, workers=args.workers, threads=args.threads,
                  backend=args.backend, address=args.address, out=args.out, progress=progress, announce=announce,
                  evaluation=evaluation, only_seeds=args.only_seeds)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'summary.md'}, {out / 'results.csv'} and the plots in {out}")
    return 1 if any("error" in r for r in finished) else 0


def cmd_config(args: argparse.Namespace) -> int:
    from wm_app.experiment import compose_config

    cfg = compose_config(args.config, args.preset, args.sets, args.seed, args.env_steps)
    print(json.dumps(to_plain(cfg), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from wm_app.experiment import shipped_config_names
    from wm_envs.dmc import domains

    print("configs: " + ", ".join(shipped_config_names()))
    labels = {"env": "env wrappers (for env.wrappers)",
              "termination": "termination functions (by env name, for imagined rollouts)"}
    for kind, registry in ALL_REGISTRIES.items():
        print(f"{labels.get(kind, kind)}: " + (", ".join(registry.names()) or "(none)"))
    print("envs: any gymnasium id (e.g. Pendulum-v1, HalfCheetah-v5), and the DeepMind Control Suite as "
          "dm_control/<domain>-<task>-v0 (e.g. dm_control/cartpole-swingup-v0); its domains and tasks:")
    for domain, tasks in domains().items():
        print(f"  {domain}: {', '.join(tasks)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from workers.dataset import export_run

    written = export_run(args.run, args.out)
    print(f"wrote {written['rows']} transitions (row width {written['row_width']}) of {args.run} to {args.out}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "compare": cmd_compare, "config": cmd_config,
            "list": cmd_list, "export": cmd_export}


def one_line(text: str) -> str:
    """``text`` on one line: a message can carry a user's value or a plugin's error with line breaks."""
    lines = text.splitlines()
    return text if len(lines) <= 1 else " ".join(line.strip() for line in lines if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; a user error prints one line to stderr and returns 2."""
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(one_line(f"worldmodels: error: {err}"), file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        print(one_line(f"worldmodels: error: {err}"), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. output piped into `head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("worldmodels: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; the traceback on request
        if os.environ.get("WORLDMODELS_TRACEBACK"):
            raise
        print(one_line(f"worldmodels: error: {type(err).__name__}: {err} "
                       "(set WORLDMODELS_TRACEBACK=1 to see the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
