import importlib.util
from pathlib import Path

import pytest


def _load_corpus_module():
    # Loaded by file path: under --import-mode=importlib the tests folder is not on sys.path.
    spec = importlib.util.spec_from_file_location(
        "_covidcxr_io_corpus", Path(__file__).with_name("_corpus.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_corpus = _load_corpus_module()


@pytest.fixture
def corpus(tmp_path):
    """Writes awkward and broken inputs into this test's tmp_path (see _corpus.py)."""
    return _corpus.Corpus(tmp_path)
