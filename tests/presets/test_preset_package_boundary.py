"""The preset format knows no pipeline: nothing under keras_covidcxr/presets imports keras_covidcxr.models."""

import ast
from pathlib import Path

import keras_covidcxr

PRESETS = Path(keras_covidcxr.__file__).parent / "presets"

# component_io builds a preset's components from an allow-list of their classes. It moves to models/
# once keras_covidcxr/training/checkpoints.py imports it from there; nothing else may join this list.
ALLOWED = {
    "component_io.py": {
        "keras_covidcxr.models.classifier.cxr_classifier",
        "keras_covidcxr.models.resunet.resunet",
    }
}


def imported_modules(path, package="keras_covidcxr.presets"):
    """Every module `path` imports, at the top or inside a function (relative imports made absolute).

    `from a import b` counts as importing both `a` and `a.b` (b may be a submodule).
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name, modules):
    return any(name == module or name.startswith(module + ".") for module in modules)


def test_no_preset_module_imports_the_models():
    modules = sorted(PRESETS.rglob("*.py"))
    assert {path.name for path in modules} >= {"registry.py", "resolve.py", "preset_format.py"}
    for path in modules:
        package = ".".join(["keras_covidcxr", *path.parent.relative_to(PRESETS.parent).parts])
        reaching = {name for name in imported_modules(path, package) if _within(name, ["keras_covidcxr.models"])}
        allowed = ALLOWED.get(path.name, set())
        assert all(_within(name, allowed) for name in reaching), f"{path.name} imports {sorted(reaching)}"


def test_the_checker_sees_every_form_of_import(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "import keras_covidcxr.models.pipeline\n"
        "def later():\n"
        "    from keras_covidcxr.models.pipeline.pipeline import Pipeline\n"
        "    from ..models import ensemble\n"
    )
    assert imported_modules(source) >= {
        "keras_covidcxr.models.pipeline",
        "keras_covidcxr.models.pipeline.pipeline",
        "keras_covidcxr.models",
        "keras_covidcxr.models.ensemble",
    }
