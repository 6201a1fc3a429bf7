"""Scoring a pipeline on a manifest split: every member, both ensembles, and the shortcut probe."""

from keras_covidcxr.evaluation.split_rows import rows_to_score

__all__ = ["rows_to_score"]
