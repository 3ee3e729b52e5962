"""The import lines of STYLE.md: lower layers never import upper ones at run time (type-only imports allowed)."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bridge_stg"

# package -> packages (or modules) it must not import outside `if TYPE_CHECKING:`
FORBIDDEN = {
    "ops": ["bridge_stg.annotations", "bridge_stg.data", "bridge_stg.model", "bridge_stg.eval", "bridge_stg.engine",
            "torch"],
    "text": ["bridge_stg.data", "bridge_stg.model", "bridge_stg.engine", "torch"],
    "annotations": ["bridge_stg.data", "bridge_stg.model", "bridge_stg.eval", "bridge_stg.engine", "torch"],
    "eval": ["bridge_stg.data", "bridge_stg.model", "bridge_stg.loss", "bridge_stg.engine", "torch"],
    "model": ["bridge_stg.data", "bridge_stg.loss", "bridge_stg.eval", "bridge_stg.engine", "hydra", "omegaconf",
              "deepspeed"],
    "loss": ["bridge_stg.data", "bridge_stg.model", "bridge_stg.engine", "hydra", "omegaconf", "deepspeed"],
    "data": ["bridge_stg.model", "bridge_stg.loss", "bridge_stg.engine", "hydra", "omegaconf", "deepspeed"],
    # command lines reach a model through bridge_stg.inference only, imported inside the handler (test below)
    "cli": ["bridge_stg.engine", "bridge_stg.model", "bridge_stg.loss", "hydra", "omegaconf", "deepspeed"],
    "engine": ["bridge_stg.cli"],
    # the predictor: data, eval, model and viz, never the engine (the evaluation settings come with the export)
    "inference": ["bridge_stg.engine", "bridge_stg.cli", "hydra", "omegaconf", "deepspeed"],
    # pictures and the HTML report: numpy, PIL, matplotlib, ops, structures, eval, annotations and data.video_io
    "viz": ["bridge_stg.model", "bridge_stg.loss", "bridge_stg.engine", "bridge_stg.cli", "hydra", "omegaconf",
            "deepspeed", "torch"],
    # the planner: composes the config through engine/builder.py, builds the model on the meta device, never trains
    "plan": ["bridge_stg.cli", "bridge_stg.inference", "hydra", "omegaconf", "deepspeed"],
}
# packages whose project imports are listed in full: anything else of bridge_stg is refused
ALLOWED_PROJECT_IMPORTS = {
    "viz": ["bridge_stg.viz", "bridge_stg.ops", "bridge_stg.structures", "bridge_stg.eval", "bridge_stg.annotations",
            "bridge_stg.data.video_io"],
    "plan": ["bridge_stg.plan", "bridge_stg.engine.specs", "bridge_stg.engine.builder", "bridge_stg.model",
             "bridge_stg.data.frames"],
}
# third-party packages -> the only modules that may import them (the adapter, the tiny-checkpoint builder, the
# config builder, the DeepSpeed engine)
CONFINED = {
    "transformers": ["model/mllm.py", "model/tiny.py"],
    "peft": ["model/mllm.py"],
    "omegaconf": ["engine/builder.py"],
    "hydra": ["engine/builder.py"],
    "deepspeed": ["engine/deepspeed_backend.py"],
}


def runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    type_only = {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(stmt.test) for node in ast.walk(stmt)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_import_order(package):
    bad = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in runtime_imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert bad == []


@pytest.mark.parametrize("package", sorted(ALLOWED_PROJECT_IMPORTS))
def test_package_imports_only_its_listed_project_modules(package):
    bad = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in runtime_imports(path):
            if (name == "bridge_stg" or name.startswith("bridge_stg.")) and not any(
                    name == a or name.startswith(a + ".") for a in ALLOWED_PROJECT_IMPORTS[package]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert bad == []


# modules -> the only top-level packages they may import (the standard library is always allowed)
ONLY = {
    "viz/figures.py": ["numpy", "PIL", "matplotlib", "bridge_stg.ops", "bridge_stg.structures"],
}


@pytest.mark.parametrize("module", sorted(ONLY))
def test_module_imports_only_its_listed_packages(module):
    """The drawing primitives stay importable wherever numpy, PIL and matplotlib are (no model, no dataset)."""
    bad = [name for name in runtime_imports(PACKAGE / module)
           if name.split(".")[0] not in sys.stdlib_module_names
           and not any(name == a or name.startswith(a + ".") for a in ONLY[module])]
    assert bad == []


def module_level_imports(path: Path) -> set[str]:
    """Imports that run when the module is imported (not those inside functions or classes)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_command_lines_import_the_predictor_inside_their_handlers():
    """``--help`` and input errors must not wait for torch: the predictor is imported where it is used."""
    bad = [f"{path.relative_to(PACKAGE.parent)} imports {name} at module level"
           for path in sorted((PACKAGE / "cli").glob("*.py")) for name in module_level_imports(path)
           if name == "torch" or name.startswith("bridge_stg.inference")]
    assert bad == []


def test_planner_command_line_imports_the_planner_inside_its_handler():
    """``bridge-stg-plan --help`` and its argument errors must not wait for torch, Hydra or the model."""
    heavy = ("torch", "bridge_stg.engine", "bridge_stg.model", "bridge_stg.plan.planner", "bridge_stg.plan.model_size")
    bad = [name for name in module_level_imports(PACKAGE / "plan" / "cli.py")
           if any(name == h or name.startswith(h + ".") for h in heavy)]
    assert bad == []


def test_shared_batch_module_sits_below_every_package():
    """``batch.py`` (the batch and the model outputs) is imported by data, model and loss: it imports none."""
    project = [name for name in runtime_imports(PACKAGE / "batch.py") if name.startswith("bridge_stg")]
    assert project == []


@pytest.mark.parametrize("package", sorted(CONFINED))
def test_third_party_packages_are_imported_in_one_place(package):
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel not in CONFINED[package] and any(n == package or n.startswith(package + ".")
                                                for n in runtime_imports(path)):
            bad.append(f"bridge_stg/{rel} imports {package}")
    assert bad == []
