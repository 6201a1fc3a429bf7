"""Model families: one folder each (the Keras class and its presets dict)."""
