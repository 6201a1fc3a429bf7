"""The preset format on disk, handle resolution (local, registered, hf://) and the registry."""
