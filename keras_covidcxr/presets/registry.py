"""Registered preset names (plain data: listing them never builds a model)."""

from keras_covidcxr.models.pipeline.pipeline_presets import PIPELINE_PRESETS


def list_presets():
    """{name: metadata} of every registered preset.

    Each metadata says whether trained weights exist: "trained" (True/False)
    and "weights" ("bundled" or "not published"), and where the name points: "handle"
    (a folder for bundled presets, hf://owner/repo@revision for the others).

    Example:
        >>> presets = list_presets()
        >>> presets["covidcxr_lite"]["weights"]
        'bundled'
    """
    return {name: {**entry["metadata"], "handle": entry["handle"]} for name, entry in PIPELINE_PRESETS.items()}


def registered_entry(name):
    """The {"metadata", "handle"} entry of a registered preset name, or None for other strings."""
    return PIPELINE_PRESETS.get(name)


def registered_handle(name):
    """The handle a registered preset name points to, or None for other strings."""
    entry = registered_entry(name)
    return entry["handle"] if entry else None
