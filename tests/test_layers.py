"""The house: every import arrow runs downward through the layers the README's layout table
names (function-level imports included), so a lower layer never needs a higher one."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own package and any package below it
LAYERS = ("registry", "wm_core", "wm_envs", "worldmodels", "policies", "workers", "wm_app")
# `python -m worldmodels` is the one arrow upward: the entry point that starts the application
ENTRY_EXCEPTIONS = {("worldmodels/__main__.py", "wm_app")}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in LAYERS)
    return found


def upward_imports(root: Path) -> list[str]:
    problems = []
    for rank, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for target in imported_packages(path):
                if LAYERS.index(target) > rank and (relative, target) not in ENTRY_EXCEPTIONS:
                    problems.append(f"{relative} imports {target} (a layer above {package})")
    return problems


def test_every_import_runs_downward():
    assert upward_imports(ROOT) == []


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "wm_core" / "bad.py").write_text("def f():\n    from workers.pipeline import SerialPipeline\n")
    (tmp_path / "wm_app" / "fine.py").write_text("import registry\nfrom worldmodels import WorldModel\n")
    assert upward_imports(tmp_path) == ["wm_core/bad.py imports workers (a layer above wm_core)"]


@pytest.mark.parametrize("package", LAYERS)
def test_every_package_says_its_job_in_its_docstring(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 8, f"{package}/__init__.py needs a docstring saying what goes there"
