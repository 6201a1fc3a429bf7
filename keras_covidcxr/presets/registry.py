"""Registered preset names (plain data: listing them never builds a model)."""

from keras_covidcxr.models.pipeline.pipeline_presets import PIPELINE_PRESETS


def list_presets():
    """{name: metadata} of every registered preset.

    Example:
        >>> isinstance(list_presets(), dict)
        True
    """
    return {name: dict(entry["metadata"]) for name, entry in PIPELINE_PRESETS.items()}


def registered_handle(name):
    """The handle a registered preset name points to, or None for other strings."""
    entry = PIPELINE_PRESETS.get(name)
    return entry["handle"] if entry else None
