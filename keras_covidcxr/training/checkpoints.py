"""Checkpoint folders: the best weights so far, and a resume state written after every epoch.

```
CHECKPOINT/
  best/                  the best model so far, as a preset component (config.json +
                         model.safetensors): `train ensemble` and `load_checkpoint` read it
  state/epoch-0007/      resume state after 7 finished epochs: weights.safetensors,
                         optimizer.safetensors (Adam's moments and step count), state.json
                         (epoch, monitored value, best so far, history)
  summary.json           what the finished run did (written by the recipes)
  run.json               what the run trains on (data checksum, segmenter, settings): a resume
                         with other data or settings is refused (`TrainingCheckpoint.start`)
  run.lock               held while a run trains here: a second run into the same folder is
                         refused (an advisory lock the system drops when its process ends)
```
Every folder is written under a temporary name and renamed into place, so a run killed at any
moment leaves the previous complete state; the newest complete `epoch-NNNN` wins on resume and
older ones are then deleted. Nothing is pickled.
"""

import contextlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
from safetensors.numpy import load_file, save_file

from keras_covidcxr.errors import ConfigError, PresetError
from keras_covidcxr.io.atomic import atomic_directory, atomic_write
from keras_covidcxr.presets import component_io
from keras_covidcxr.settings import setting_differences

STATE_FORMAT = 1
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
_HELD_LOCKS = {}  # resolved folder -> open lock file, for the process's lifetime or until `release`
# Settings a resumed run may change: how long it trains and how it runs, not what it learns.
RESUMABLE_SETTINGS = ("epochs", "head_epochs", "max_epochs_per_stage", "patience", "workers",
                      "steps_per_execution", "jit_compile", "run_eagerly")


class TrainingCheckpoint:
    """One training run's checkpoint folder (see the module doc for the layout).

    Example:
        >>> checkpoint = TrainingCheckpoint("/tmp/run")  # doctest: +SKIP
        >>> checkpoint.load_best()  # the best model so far  # doctest: +SKIP
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"{self.folder}: is a file, not a checkpoint folder")

    @property
    def best_dir(self):
        return self.folder / "best"

    @property
    def state_root(self):
        return self.folder / "state"

    # === best weights ===

    def save_best(self, model):
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_directory(self.best_dir, replace_if=lambda path: True) as tmp:
            component_io.write_component(model, tmp)

    def has_best(self):
        return (self.best_dir / component_io.WEIGHTS_FILE).is_file()

    def load_best(self):
        """The best model so far, built from its config (a `ResUnet` or `CXRClassifier`)."""
        if not self.folder.is_dir():
            raise PresetError(
                f"{self.folder}: no such training run folder (the --out folder of a `covidcxr train` run; "
                "a preset is not one)"
            )
        if not self.has_best():
            raise PresetError(f"{self.best_dir}: no best checkpoint (has the run finished an epoch?)")
        return component_io.read_component(self.best_dir)

    def restore_best_weights(self, model):
        """Load best/'s weights into `model` (same architecture)."""
        saved = load_file(str(self.best_dir / component_io.WEIGHTS_FILE))
        _assign(model.weights, saved, self.best_dir)

    @classmethod
    def of(cls, folder):
        """The run a folder belongs to: the folder itself, or the run whose `best/` it is."""
        folder = Path(folder)
        return cls(folder.parent if folder.name == "best" and (folder.parent / RUN_FILE).is_file() else folder)

    def require_finished(self, what):
        """Refuse a run folder whose training has not finished (interrupted, or still running): it has a run.json
        but no summary.json, so nothing records what its best weights were trained on. A component folder
        that is no run's `best/` has neither and is let through."""
        if (self.folder / RUN_FILE).is_file() and self.read_summary() is None:
            raise ConfigError(f"{self.folder}: its {what} training has not finished (no summary.json: interrupted, "
                              f"or still running); rerun its `covidcxr train {what}` command to finish it")

    def refuse_foreign_folder(self):
        """Refuse to train into a folder that holds something other than a training run (a preset, the user's
        files): starting anew there would delete or mix with them. A run is known by its run.json."""
        if not self.folder.is_dir():
            return
        entries = {path.name for path in self.folder.iterdir()}
        if not entries - {LOCK_FILE} or RUN_FILE in entries:
            return
        what = "is a preset" if "metadata.json" in entries else "exists and is not a training run folder"
        raise ConfigError(f"{self.folder}: {what} (no {RUN_FILE}); train into a new or empty folder")

    # === the run ===

    def start(self, run, resume=True):
        """Begin the run `run` describes (JSON-ready: data checksum, segmenter, settings) in this folder.

        resume=False trains anew: an earlier run's state, best weights and summary are removed first.
        Resuming a checkpoint written for other data or settings is refused (a resume would mix two runs
        under one record); settings in `RESUMABLE_SETTINGS` may change. It takes the folder's lock
        (`lock`): `started` releases it when the run ends.
        """
        path = self.folder / RUN_FILE
        self.lock()
        if not resume:
            self.clear()
        elif path.is_file() and self.latest_state() is not None:
            differ = [f"{key}: {json.dumps(a)} there, {json.dumps(b)} here"
                      for key, a, b in setting_differences(json.loads(path.read_text()), run, RESUMABLE_SETTINGS)]
            if differ:
                raise ConfigError(f"{self.folder}: holds a run on other data or settings ({'; '.join(differ)}); "
                                  "rerun with them to resume, or restart it (--restart, resume=False) to train anew")
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as handle:
            handle.write(json.dumps(run, indent=2) + "\n")

    @contextlib.contextmanager
    def started(self, run, resume=True):
        """`start` the run, hold the folder while the block trains, and `release` it however the block ends.

        Example:
            >>> with TrainingCheckpoint("/tmp/run").started({"data": "..."}):  # doctest: +SKIP
            ...     train_segmenter(model, train, val, checkpoint_dir="/tmp/run")
        """
        try:
            self.start(run, resume)
            yield self
        finally:
            self.release()

    def lock(self):
        """Hold this folder for this process; refused while another process trains here.

        Released by `release` or when the process ends, however it ends. Where the system has no
        `fcntl` (Windows) nothing is locked.
        """
        try:
            import fcntl
        except ImportError:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder.resolve()
        if key in _HELD_LOCKS:
            return
        handle = open(key / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(f"{self.folder}: another training run ({holder}) is writing to this folder; let it "
                              "finish, or train into another folder") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        _HELD_LOCKS[key] = handle

    def release(self):
        """Let other processes train in this folder again (after `start`; a no-op otherwise)."""
        handle = _HELD_LOCKS.pop(self.folder.resolve(), None)
        if handle is not None:
            handle.close()

    def clear(self):
        """Remove an earlier run's resume state, best weights and summary (a restart)."""
        for folder in (self.state_root, self.best_dir):
            shutil.rmtree(folder, ignore_errors=True)
        (self.folder / "summary.json").unlink(missing_ok=True)

    # === resume state ===

    def save_state(self, model, epoch, state, with_optimizer=True):
        """Write the resume state after `epoch` finished epochs (weights, optimizer, `state`)."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        target = self.state_root / f"epoch-{epoch:04d}"
        with atomic_directory(target, replace_if=lambda path: True) as tmp:
            save_file(component_io.weights_by_path(model), str(tmp / "weights.safetensors"))
            optimizer = model.optimizer
            if with_optimizer and optimizer is not None and optimizer.built:
                save_file(_optimizer_arrays(optimizer), str(tmp / "optimizer.safetensors"))
            document = {"format": STATE_FORMAT, "epoch": int(epoch), **state}
            (tmp / "state.json").write_text(json.dumps(document, indent=2) + "\n")
        for older in self._state_dirs()[:-1]:
            shutil.rmtree(older, ignore_errors=True)

    def _state_dirs(self):
        if not self.state_root.is_dir():
            return []
        return sorted(
            path for path in self.state_root.iterdir()
            if path.name.startswith("epoch-") and (path / "state.json").is_file()
        )

    def latest_state(self):
        """The newest complete state.json as a dict, or None."""
        dirs = self._state_dirs()
        if not dirs:
            return None
        return json.loads((dirs[-1] / "state.json").read_text())

    def restore_state(self, model):
        """Load the newest state's weights and optimizer into a compiled `model`; return its dict.

        Returns None when there is nothing to resume from.
        """
        dirs = self._state_dirs()
        if not dirs:
            return None
        latest = dirs[-1]
        _assign(model.weights, load_file(str(latest / "weights.safetensors")), latest)
        optimizer_file = latest / "optimizer.safetensors"
        if optimizer_file.is_file():
            optimizer = model.optimizer
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            saved = load_file(str(optimizer_file))
            variables = optimizer.variables
            if len(saved) != len(variables):
                raise PresetError(
                    f"{optimizer_file}: {len(saved)} optimizer variables saved, the model has "
                    f"{len(variables)}; was the checkpoint written by a different model or optimizer?"
                )
            for key, variable in zip(sorted(saved), variables):
                if tuple(saved[key].shape) != tuple(variable.shape):
                    raise PresetError(f"{optimizer_file}: {key} does not fit {variable.path}")
                variable.assign(saved[key])
        return json.loads((latest / "state.json").read_text())

    def write_summary(self, summary):
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.folder / "summary.json", "w") as handle:
            handle.write(json.dumps(summary, indent=2) + "\n")

    def read_summary(self):
        path = self.folder / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(folder):
    """The best model of a checkpoint folder (or of a component folder such as `best/` itself)."""
    folder = Path(folder)
    if (folder / "metadata.json").is_file():
        raise PresetError(f"{folder}: is a preset, not a training run folder (the --out folder of a `covidcxr train` "
                          "run); `covidcxr finetune` trains from a preset")
    if (folder / component_io.CONFIG_FILE).is_file():
        return component_io.read_component(folder)
    return TrainingCheckpoint(folder).load_best()


def _optimizer_arrays(optimizer):
    # keyed by position (paths of optimizer variables need not be unique); restored in order
    return {
        f"{i:05d}:{v.path}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(optimizer.variables)
    }


def _assign(variables, saved, where):
    expected = {v.path: v for v in variables}
    if set(expected) != set(saved):
        missing = sorted(set(expected) - set(saved))[:3]
        unexpected = sorted(set(saved) - set(expected))[:3]
        raise PresetError(
            f"{where}: saved weights do not match the model (missing {missing}, unexpected {unexpected})"
        )
    for path, variable in expected.items():
        if tuple(saved[path].shape) != tuple(variable.shape):
            raise PresetError(f"{where}: weight {path} has shape {saved[path].shape}, need {variable.shape}")
        variable.assign(saved[path])


def _is_better(value, best, mode):
    if best is None:
        return True
    return value > best if mode == "max" else value < best


class BestEpochCallback(keras.callbacks.Callback):
    """Keeps the best weights by `monitor`, stops after `patience` epochs without improvement,
    and (with a checkpoint) writes best/ on improvement and the resume state after every epoch.

    `best`, `best_epoch` and `history` may come from an earlier (resumed) run or stage; the
    patience counts from `best_epoch` (or from `patience_from`, the stage's first epoch, if later),
    so it survives a resume. `best_weights` holds the best weights seen by THIS callback (None if
    no epoch beat the carried-over best). `save_states=False` writes best/ only.
    """

    def __init__(self, monitor, mode="max", patience=0, checkpoint=None, best=None, best_epoch=None,
                 history=None, extra_state=None, patience_from=0, save_states=True):
        super().__init__()
        if mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.checkpoint = checkpoint
        self.best = best
        self.best_epoch = best_epoch
        self.history = list(history or [])
        self.extra_state = dict(extra_state or {})
        self.best_weights = None
        self.patience_from = patience_from
        self.save_states = save_states
        self.improved = False

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.monitor not in logs:
            raise ConfigError(f"cannot monitor {self.monitor!r}: the epoch logged only {sorted(logs)}")
        value = float(logs[self.monitor])
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        if np.isfinite(value) and _is_better(value, self.best, self.mode):
            self.best, self.best_epoch, self.improved = value, epoch + 1, True
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            if self.checkpoint is not None:
                self.checkpoint.save_best(self.model)
        if self.checkpoint is not None and self.save_states:
            self.checkpoint.save_state(self.model, epoch + 1, self.state())
        if self.patience and epoch + 1 - max(self.best_epoch or 0, self.patience_from) >= self.patience:
            self.model.stop_training = True

    def state(self):
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            **self.extra_state,
        }
