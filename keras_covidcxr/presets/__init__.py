"""The preset format on disk, handle resolution (local, registered, hf://) and the registry."""

from keras_covidcxr.presets.destination import check_preset_destination

__all__ = ["check_preset_destination"]
