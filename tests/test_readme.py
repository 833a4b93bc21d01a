"""The README's plugin example works as written."""
import re
from pathlib import Path

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
