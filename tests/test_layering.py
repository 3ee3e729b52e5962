"""The import lines of STYLE.md: lower layers never import upper ones at run time (type-only imports allowed)."""

import ast
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
    "cli": ["bridge_stg.engine", "bridge_stg.model", "bridge_stg.loss", "hydra", "omegaconf", "deepspeed"],
    "engine": ["bridge_stg.cli"],
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
