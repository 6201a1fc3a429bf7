"""The shared base of every functional component."""

import keras


class SerializableModel(keras.Model):
    """A functional `keras.Model` rebuilt from its constructor arguments.

    Subclasses build their layers, wire the graph, call
    `super().__init__(inputs, outputs, name=...)` and return exactly their
    constructor arguments from `get_config`, so
    `cls.from_config(model.get_config())` rebuilds the same model (KerasHub's
    convention).
    """

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
