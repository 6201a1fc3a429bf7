"""Tiny synthetic data shared by the training tests (written once per session)."""

import pytest


@pytest.fixture(scope="session")
def synthetic_manifest_path(tmp_path_factory):
    from keras_covidcxr.training.synthetic_data import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), patients_per_class=6, size=64, seed=3)


@pytest.fixture(scope="session")
def synthetic_manifest(synthetic_manifest_path):
    from keras_covidcxr.data import read_manifest

    return read_manifest(synthetic_manifest_path)
