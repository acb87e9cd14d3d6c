"""The package's shape, read from its source: role folders imported in one direction only, no
import cycles, nothing done at import time that a program importing intentkit would notice."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "intentkit"

# Ground floor first: a folder imports only the folders before it (and itself). The kernel is
# the top-level modules every folder may use.
KERNEL = ("intentkit.errors", "intentkit.progress", "intentkit.runtime", "intentkit._version")
FOLDERS = ("text", "models", "encoders", "data", "artifacts", "serving", "evaluation", "training",
           "cli")
# Entry points above every folder: `python -m intentkit`, and the older `python -m
# intentkit.serve` spelling (both hand over to cli/).
ENTRY_POINTS = ("intentkit.__main__", "intentkit.serve", "intentkit.serve.__main__")


def module_name(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def runtime_imports(path):
    """The intentkit modules a module imports, lazily or not; `if TYPE_CHECKING:` blocks are
    left out (they never run)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            if base.startswith("intentkit"):
                found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("intentkit")}
    return found


def import_graph():
    graph = {module_name(path): runtime_imports(path) for path in PACKAGE.rglob("*.py")}
    return {module: {target for target in targets if target in graph and target != module}
            for module, targets in graph.items()}


def rank(module):
    """A module's floor: 0 the kernel, 1.. the folders in order, above them the entry points;
    None for the package root (its names are imported lazily, on first use)."""
    if module == "intentkit":
        return None
    if module in KERNEL:
        return 0
    if module in ENTRY_POINTS:
        return len(FOLDERS) + 1
    folder = module.split(".")[1]
    assert folder in FOLDERS, f"{module} is in no role folder: add it to one, or to KERNEL"
    return FOLDERS.index(folder) + 1


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()

    def reaches(start, goal, seen=()):
        return any(target == goal or (target not in seen and reaches(target, goal,
                                                                     (*seen, target)))
                   for target in graph[start])
    cycles = sorted(m for m in graph if reaches(m, m))
    assert not cycles, cycles


def test_a_folder_imports_only_the_folders_before_it():
    upward = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                    for target in targets
                    if rank(target) is not None and rank(module) is not None
                    and rank(target) > rank(module))
    assert not upward, upward


def test_the_order_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check above can fail: a serving module importing training is reported."""
    bad = tmp_path / "intentkit" / "serving" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..training import pipeline\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    imports = runtime_imports(bad)
    assert "intentkit.training.pipeline" in imports
    assert rank("intentkit.training.pipeline") > rank("intentkit.serving.bad")


def test_plotting_libraries_are_imported_only_inside_functions():
    """matplotlib and seaborn come in when a plot is made, never at import, and no module
    chooses a backend: a notebook that imports intentkit keeps its own."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{module_name(path)}: {name}" for name in names
                      if name.split(".")[0] in ("matplotlib", "seaborn")]
        found += [f"{module_name(path)}: matplotlib.use" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr == "use"
                  and getattr(node.value, "id", None) == "matplotlib"]
    assert not found, found


@pytest.mark.parametrize("module", ["intentkit", "intentkit.serving.predictor",
                                    "intentkit.evaluation.report"])
def test_importing_the_light_modules_imports_no_plotting(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_public_api_is_lazy():
    """`import intentkit` imports none of what its names need until a name is used."""
    code = ("import sys, intentkit; heavy = {'tensorflow', 'keras', 'sklearn', 'nltk'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
            "m.startswith('intentkit.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['intentkit._version']"
