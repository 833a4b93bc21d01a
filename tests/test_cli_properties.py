"""Property-based tests: no input, however wrong, crashes the command line or touches saved runs."""
import ast
import json
import math
import os
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wm_app.cli import main
from wm_app.experiment import compose_config
from wm_core.config import to_plain


def leaf_keys(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaf_keys(value, path + ".")
        else:
            yield path


VALID_KEYS = sorted(k for k in leaf_keys(to_plain(compose_config("pendulum_sac", "debug")))
                    if not k.startswith("env.kwargs"))
KEYS = st.one_of(st.sampled_from(VALID_KEYS), st.text(string.ascii_lowercase + "._", min_size=1, max_size=12))
VALUES = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=8), st.lists(st.integers(-3, 300), max_size=3),
    st.dictionaries(st.text(string.ascii_lowercase, max_size=4), st.integers(-2, 2), max_size=2),
)
# After the random overrides, these keep a valid run small (later --set values win).
SMALL_RUN = ["--set", "collector.env_num=1", "--set", "evaluator.n_episodes=1", "--set", "buffer.capacity=500",
             "--set", "env.max_episode_steps=20", "--env-steps", "2"]
PROPERTY = settings(max_examples=int(os.environ.get("WORLDMODELS_PROPERTY_EXAMPLES", 40)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def as_literal(value):
    return repr(value) if not isinstance(value, str) else value


def check_one_line_error(capsys, code, err=None):
    err = (capsys.readouterr().err if err is None else err).strip()
    if code == 0:
        return
    assert code == 2, f"an unexpected exception escaped as an internal error: {err}"
    assert len(err.splitlines()) == 1 and err.startswith("worldmodels: error: ") and "Traceback" not in err


def read_as_given(text):
    """What ``--set key=text`` means: a Python literal where ``text`` is one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def holds(resolved, given):
    """Whether a resolved config value holds the value given (numbers compare by value, NaN
    included; a dict holds the given keys, merged over the section's defaults)."""
    if isinstance(given, dict):
        return isinstance(resolved, dict) and all(k in resolved and holds(resolved[k], v) for k, v in given.items())
    if isinstance(given, float) and math.isnan(given):
        return isinstance(resolved, float) and math.isnan(resolved)
    return resolved == given and isinstance(resolved, bool) == isinstance(given, bool)


def overlap(a, b):
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def check_values_held(resolved, pairs, later_keys=()):
    """Every ``--set key=value`` of ``pairs`` is what the resolved config holds, but for those a
    later ``--set`` of the same key (or one above or below it) overrides."""
    pairs = [(key, value) for i, (key, value) in enumerate(pairs)
             if not any(overlap(key, later) for later in [k for k, _ in pairs[i + 1:]] + list(later_keys))]
    for key, value in pairs:
        node = resolved
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"--set {key} resolved without the key"
            node = node[part]
        given = read_as_given(as_literal(value))
        if key == "policy.device" and given is None:
            given = resolved["device"]  # None: the pipeline's device
        assert holds(node, given), f"--set {key}={as_literal(value)} resolved to {node!r}"


@PROPERTY
@given(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2))
@example(pairs=[("policy.hidden_sizes", [3, 5]), ("policy.hidden_sizes", [7])])
def test_random_overrides_resolve_to_the_values_given_or_fail_with_one_line(pairs, capsys):
    sets = [arg for key, value in pairs for arg in ("--set", f"{key}={as_literal(value)}")]
    code = main(["config", "pendulum_sac", "--preset", "debug", *sets])
    captured = capsys.readouterr()
    if code != 0:
        check_one_line_error(capsys, code, captured.err)
        return
    check_values_held(json.loads(captured.out), pairs)


def test_overrides_resolve_to_the_values_given(capsys):
    sets = ["policy.gamma=0.5", "collector.env_num=3", "env.kwargs.g=9.0", "policy.hidden_sizes=[8, 4]",
            "exp_name=my run", "policy.target_entropy=None", "policy.actor_lr=1"]
    assert main(["config", "pendulum_sac", "--preset", "debug", *[a for s in sets for a in ("--set", s)]]) == 0
    resolved = json.loads(capsys.readouterr().out)
    policy = resolved["policy"]
    assert (policy["gamma"], policy["hidden_sizes"], policy["target_entropy"]) == (0.5, [8, 4], None)
    assert policy["actor_lr"] == 1.0 and isinstance(policy["actor_lr"], float)  # a float key stays a float
    assert resolved["collector"]["env_num"] == 3 and resolved["env"]["kwargs"] == {"g": 9.0}
    assert resolved["exp_name"] == "my run"


@PROPERTY
@given(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2))
@example(pairs=[("policy.gamma", 0.5), ("seed", 7)])  # a valid run: random draws rarely are
@example(pairs=[("buffer", 1)])  # an AttributeError escaped
@example(pairs=[("buffer", None)])  # silently became the default buffer
@example(pairs=[("buffer.storage", "")])  # refused once the run directory existed: it was left behind
@example(pairs=[("buffer.import_names", ":\r")])  # a line break inside a name the message quotes
def test_random_overrides_train_or_fail_without_leaving_a_run(pairs, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("runs")
    sets = [arg for key, value in pairs for arg in ("--set", f"{key}={as_literal(value)}")]
    code = main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(out), *sets,
                 *SMALL_RUN])
    check_one_line_error(capsys, code)
    if code != 0:
        assert not any(out.rglob("*")), "a failed start left files behind"
        return
    (config_file,) = out.glob("*/*/config.json")
    later = [arg.partition("=")[0] for arg in SMALL_RUN if "=" in arg] + ["env_steps"]
    check_values_held(json.loads(config_file.read_text()), pairs, later)


ARGS = st.lists(st.sampled_from(["train", "config", "list", "pendulum_sac", "no_config", "--set", "x=1",
                                 "policy.gamma=2", "--seed", "-3", "abc", "--env-steps", "0", "10", "--preset",
                                 "debug", "nope", "--resume", "--out", "--no-progress", "-h?", "eval"]),
                max_size=6)


@PROPERTY
@given(argv=ARGS)
def test_random_command_lines_never_crash(argv, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("runs")
    if "train" in argv:
        argv = [*argv, "--out", str(out), "--env-steps", "2", "--set", "evaluator.n_episodes=1",
                "--set", "env.max_episode_steps=20"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # --help
        code = exit_.code
    check_one_line_error(capsys, code)


@PROPERTY
@given(argv=st.lists(st.sampled_from(["--set", "seed=3", "--env-steps", "5", "100", "--preset", "debug",
                                 "pendulum_sac", "--seed", "1"]), max_size=4))
@example(argv=["--env-steps", "5", "--env-steps", "100"])  # valid (the last one counts): random draws rarely are
def test_bad_resume_never_touches_the_saved_run(argv, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "pendulum_sac", "--preset", "debug", "--env-steps", "50", "--no-progress",
                 "--out", str(out)]) == 0
    (run_dir,) = out.glob("pendulum_sac/*")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    progress_before = (run_dir / "progress.csv").read_text().splitlines()
    code = main(["train", "--resume", str(run_dir), "--no-progress", *argv])
    if code == 0:  # a valid resume (a larger --env-steps and nothing else) continues the run to it
        budget = int(argv[len(argv) - 1 - argv[::-1].index("--env-steps") + 1])
        assert budget > 50 and set(argv) <= {"--env-steps", "5", "100"}
        assert json.loads((run_dir / "config.json").read_text())["env_steps"] == budget
        progress = (run_dir / "progress.csv").read_text().splitlines()
        # the saved rows are kept but the last (the end-of-budget evaluation, which a run to the larger
        # budget would not have made); the new end-of-budget row closes the file
        assert progress[:len(progress_before) - 1] == progress_before[:-1]
        assert progress[-1].split(",")[0] == str(budget)
        return
    check_one_line_error(capsys, code)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_resume_past_the_budget_is_refused(tmp_path, capsys):
    assert main(["train", "pendulum_sac", "--preset", "debug", "--env-steps", "50", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.glob("pendulum_sac/*")
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--env-steps", "50"]) == 2
    assert "stopped at env step 50" in capsys.readouterr().err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env_steps"] == 50 and os.path.exists(run_dir / "checkpoint.pt")
