"""Every runnable example in the package's docstrings gives what it shows (the README points users at them)."""

import doctest
import importlib
import pkgutil

import pytest

import keras_covidcxr

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(keras_covidcxr.__path__, "keras_covidcxr."))


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (python -m pytest --doctest-modules {name.replace('.', '/')}.py shows them)"
