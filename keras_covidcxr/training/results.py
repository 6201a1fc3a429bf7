"""What a training run returns."""

import dataclasses


@dataclasses.dataclass
class TrainingResult:
    """What a training run returns.

    `model` holds the best weights (it may be a rebuilt copy of the model passed in when
    `mixed_precision` is set); `history` one dict of logs per epoch (including epochs of a run
    that was resumed); `best_value` / `best_epoch` the best monitored value and its epoch
    (1-based); `resumed_from_epoch` the number of epochs already done when this call started.
    """

    model: object
    monitor: str
    best_value: float | None
    best_epoch: int | None
    history: list
    resumed_from_epoch: int = 0
    seconds: float = 0.0
    details: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        return {
            "monitor": self.monitor,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "resumed_from_epoch": self.resumed_from_epoch,
            "seconds": round(self.seconds, 1),
            **self.details,
        }
