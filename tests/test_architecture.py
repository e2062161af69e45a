"""The layout's rules, checked on the source: what sits on top, who may import whom.

Top level: the command-line scripts only. Below them, the `faceparsing` package,
whose layers import one way: foundations <- data <- model <- training/inference.
"""

import ast
import subprocess
import sys

import pytest
from checkout import REPO

SCRIPTS = {"train", "evaluate", "visualize", "export", "data_generator", "deeplab"}
PACKAGE = REPO / "faceparsing"
FOUNDATIONS = {"faceparsing", "faceparsing.classes", "faceparsing.errors", "faceparsing.files",
               "faceparsing.images", "faceparsing.cli", "faceparsing.drawing"}  # fmt: skip
# Modules that must import without Keras (and so without TensorFlow): the synthetic-face
# workers and the data tools use them.
KERAS_FREE = FOUNDATIONS | {
    f"faceparsing.data.{name}" for name in ("splits", "release", "folder", "packed", "layout",
    "augment", "class_weights", "batches", "loader", "synthetic", "packing")
} | {"faceparsing.data"}  # fmt: skip


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path):
    """Every module `path` imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # `from faceparsing import config` imports the module faceparsing.config.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_imports(path, modules):
    return {
        name for name in imported_modules(path) if name in modules and name != module_name(path)
    }


def python_files():
    folders = ["faceparsing", "tests", "benchmarks", "experiments"]
    return sorted(REPO.glob("*.py")) + [
        p for f in folders for p in sorted((REPO / f).rglob("*.py"))
    ]


def test_top_level_holds_only_the_scripts():
    assert {path.stem for path in REPO.glob("*.py")} == SCRIPTS


def test_no_module_imports_a_script():
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in python_files()
        if "tests" not in path.relative_to(REPO).parts
        for name in imported_modules(path) & SCRIPTS
    ]
    assert not offenders


def test_no_private_keras_imports_and_no_sys_path_edits():
    offenders = []
    for path in python_files():
        source = path.read_text()
        if path.name == "test_architecture.py":
            continue
        if any(name.startswith("keras.src") for name in imported_modules(path)):
            offenders.append(f"{path.relative_to(REPO)}: keras.src")
        if "sys.path" in source:
            offenders.append(f"{path.relative_to(REPO)}: sys.path")
    assert not offenders


def test_package_has_no_import_cycle():
    modules = package_modules()
    graph = {name: project_imports(path, modules) for name, path in modules.items()}
    visiting, done, cycles = [], set(), []

    def visit(name):
        if name in visiting:
            cycles.append(visiting[visiting.index(name) :] + [name])
            return
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles


@pytest.mark.parametrize(
    ("layer", "may_import"),
    [
        ("foundations", FOUNDATIONS),
        ("faceparsing.data", FOUNDATIONS | {"faceparsing.data"}),
        ("faceparsing.model", FOUNDATIONS | {"faceparsing.model"}),
    ],
)
def test_layers_import_only_below_them(layer, may_import):
    modules = package_modules()
    members = FOUNDATIONS if layer == "foundations" else {
        name for name in modules if name == layer or name.startswith(layer + ".")
    }  # fmt: skip
    offenders = [
        f"{name} imports {target}"
        for name in sorted(members)
        for target in project_imports(modules[name], modules)
        if not any(target == allowed or target.startswith(allowed + ".") for allowed in may_import)
        and target not in FOUNDATIONS
    ]
    assert not offenders


def test_inference_and_training_do_not_import_each_other():
    modules = package_modules()
    offenders = [
        f"{name} imports {target}"
        for name, path in modules.items()
        for target in project_imports(path, modules)
        for a, b in (
            ("faceparsing.inference", "faceparsing.training"),
            ("faceparsing.training", "faceparsing.inference"),
        )  # fmt: skip
        if name.startswith(a) and target.startswith(b)
    ]
    assert not offenders


def test_keras_free_modules_import_neither_keras_nor_tensorflow():
    statically = [
        f"{name} imports {target}"
        for name in sorted(KERAS_FREE)
        for target in imported_modules(package_modules()[name])
        if target.split(".")[0] in ("keras", "tensorflow", "jax")
    ]
    assert not statically
    # And at run time, transitively: the synthetic-face workers must start light.
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in sorted(KERAS_FREE))
        + "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
