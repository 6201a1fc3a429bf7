"""The pipeline, its presets dict and its golden-output verification.

Importing this package registers the pipeline presets (plain data) and stays
import-light: listing presets never builds a model or imports Keras.
"""

from keras_covidcxr.models.pipeline.pipeline_presets import PIPELINE_PRESETS
from keras_covidcxr.presets.registry import register_presets

register_presets(PIPELINE_PRESETS)
