"""The README's plugin example works as written, and the files it links to are in the repository."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wm_app.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def train_readme_plugin(tmp_path, monkeypatch, filename, config):
    """Write the README's ``filename`` example beside a run of its ``worldmodels train CONFIG --preset
    debug --set "world_model=..."`` command; returns the run directory."""
    text = README.read_text()
    code = re.search(rf"`{re.escape(filename)}`:\n\n```python\n(.*?)```", text, re.S).group(1)
    command = re.search(rf"worldmodels train {config} --preset debug \\\n\s+--set \"(world_model=.*?)\"", text)
    (tmp_path / filename).write_text(code)
    monkeypatch.chdir(tmp_path)
    assert main(["train", config, "--preset", "debug", "--no-progress", "--out", str(tmp_path / "runs"),
                 "--set", command.group(1)]) == 0
    (run,) = (tmp_path / "runs").glob(f"{config}/*")
    return run


def test_readme_plugin_world_model_trains(tmp_path, capsys, monkeypatch):
    run = train_readme_plugin(tmp_path, monkeypatch, "my_model.py", "pendulum_sac")
    assert "final eval return" in capsys.readouterr().out
    assert "world_model/loss" in (run / "progress.csv").read_text().splitlines()[0]


def test_readme_dream_plugin_trains_the_dreamer_policy(tmp_path, capsys, monkeypatch):
    run = train_readme_plugin(tmp_path, monkeypatch, "my_dream.py", "pendulum_dreamerv3")
    assert "final eval return" in capsys.readouterr().out
    rows = (run / "progress.csv").read_text().splitlines()
    assert "world_model/loss" in rows[0] and "rollout_length" in rows[0]
    assert int(rows[-1].split(",")[2]) > 0  # the dreamer policy made updates inside the plugin model


def test_readme_links_point_at_committed_files():
    root = README.parent
    links = [target for target in re.findall(r"\]\(([\w./-]+)\)", README.read_text()) if "://" not in target]
    assert links, "the README links to its comparison outputs"
    for target in links:
        assert (root / target).exists(), f"README links to '{target}', which does not exist"
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: existence checked only")
    tracked = subprocess.run(["git", "ls-files", "--", *links], cwd=root, capture_output=True, text=True, check=True)
    listed = tracked.stdout.splitlines()
    for target in links:
        assert any(path == target or path.startswith(target.rstrip("/") + "/") for path in listed), \
            f"README links to '{target}', which git does not track"


def test_ci_runs_the_readme_test_command_and_requires_ray():
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    command = re.search(r"Install and run the test suite.*?```bash\n(.*?)\n```", README.read_text(), re.S).group(1)
    assert ci[-1] == command, "the CI script must run the README's test command verbatim"
    # the command installs the ray extra, so CI must not let the Ray backend test skip
    assert "ray]" in command and "export WORLDMODELS_REQUIRE_RAY=1" in ci
