"""Each concern in its room: the low layers never import the layers built on them (lazy imports included)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cryopoint"

# package (or module) -> cryopoint subpackages/modules it must never import
FORBIDDEN = {
    "coords.py": {"data", "post", "model", "engine", "infer", "api", "io", "synth", "viz", "baselines"},
    # The data layer reads, normalises and draws targets; turning probabilities into picks is post-processing,
    # and the stride rule it shares with the peak finder lives in coords.
    "data": {"post", "model", "engine", "infer", "api", "viz", "baselines", "batch"},
    "post": {"data", "model", "engine", "infer", "api", "viz", "baselines", "batch", "synth"},
}


def _imported(path: Path) -> set[str]:
    """The ``cryopoint.X`` names (first component after ``cryopoint``) a module imports anywhere in its body."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in mods if m.startswith("cryopoint.")}
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_low_layers_do_not_import_higher_ones(room):
    files = [PACKAGE / room] if room.endswith(".py") else sorted((PACKAGE / room).glob("*.py"))
    assert files
    bad = {f"{f.relative_to(PACKAGE)} imports cryopoint.{m}" for f in files for m in _imported(f) & FORBIDDEN[room]}
    assert not bad, sorted(bad)


def test_import_scan_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from cryopoint.post.nms import find_peaks\n    import cryopoint.model\n")
    assert _imported(src) == {"post", "model"}
