"""Folder prediction: find image files, predict them in a stream, write a resumable results file.

Example:
    >>> from keras_covidcxr import Pipeline, predict_to_file
    >>> pipeline = Pipeline.from_preset("./my_preset")  # doctest: +SKIP
    >>> predict_to_file(pipeline, ["scans/"], "results.csv", batch_size=8, workers=2)  # doctest: +SKIP
    PredictionSummary(total=1200, done=1197, failed=3, skipped=0, skipped_failed=0)
"""

from keras_covidcxr.inference.batch_prediction import PredictionSummary, model_sha256, predict_to_file
from keras_covidcxr.inference.image_walk import IMAGE_SUFFIXES, find_images
from keras_covidcxr.inference.results_file import ResultsFile, csv_columns

__all__ = [
    "IMAGE_SUFFIXES",
    "PredictionSummary",
    "ResultsFile",
    "csv_columns",
    "find_images",
    "model_sha256",
    "predict_to_file",
]
