"""The README's plugin example works as written, and the files it links to are in the repository."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from worldmodels.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_plugin_world_model_trains(tmp_path, capsys, monkeypatch):
    text = README.read_text()
    code = re.search(r"`my_model.py`:\n\n```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"worldmodels train pendulum_sac --preset debug \\\n\s+--set \"(world_model=.*?)\"", text)
    (tmp_path / "my_model.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path / "runs"),
                 "--set", command.group(1)]) == 0
    assert "final eval return" in capsys.readouterr().out
    (progress,) = (tmp_path / "runs").glob("pendulum_sac/*/progress.csv")
    assert "world_model/loss" in progress.read_text().splitlines()[0]


def test_readme_dream_plugin_trains_the_dreamer_policy(tmp_path, capsys, monkeypatch):
    text = README.read_text()
    code = re.search(r"`my_dream.py`:\n\n```python\n(.*?)```", text, re.S).group(1)
    command = re.search(r"worldmodels train pendulum_dreamerv3 --preset debug \\\n\s+--set \"(world_model=.*?)\"", text)
    (tmp_path / "my_dream.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "pendulum_dreamerv3", "--preset", "debug", "--no-progress", "--out",
                 str(tmp_path / "runs"), "--set", command.group(1)]) == 0
    assert "final eval return" in capsys.readouterr().out
    (run,) = (tmp_path / "runs").glob("pendulum_dreamerv3/*")
    header = (run / "progress.csv").read_text().splitlines()[0]
    assert "world_model/loss" in header and "rollout_length" in header
    rows = (run / "progress.csv").read_text().splitlines()
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
