"""What a dataset builder kept and what it dropped, and why.

Example:
    >>> report = BuildReport("covidx")
    >>> report.keep(label="covid")
    >>> report.drop("b.png", "lateral view")
    >>> print(report.summary())
    covidx: kept 1 image, dropped 1
      kept by label: covid 1
      dropped: lateral view 1
        b.png
"""

import dataclasses
import json
from collections import Counter
from typing import NamedTuple

from keras_covidcxr.io.atomic import atomic_write

# The summary names at most this many dropped files per reason.
_MAX_LISTED_PER_REASON = 10


@dataclasses.dataclass(frozen=True)
class DroppedItem:
    """An input the builder left out: what it was (file or annotation) and the reason."""

    item: str
    reason: str


@dataclasses.dataclass
class BuildReport:
    """Counts of kept images (by label) and every dropped item with its reason."""

    builder: str
    kept: int = 0
    kept_by_label: Counter = dataclasses.field(default_factory=Counter)
    kept_by_task: dict = dataclasses.field(default_factory=dict)
    dropped: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def keep(self, label=None, task=None):
        """Record one kept image (of `label`, None for seg-only rows; of `task`, "cls" or "seg", if known)."""
        self.kept += 1
        self.kept_by_label[label or "(no label)"] += 1
        if task is not None:
            self.kept_by_task.setdefault(task, Counter())[label or "(no label)"] += 1

    def drop(self, item, reason):
        """Record one dropped input and why."""
        self.dropped.append(DroppedItem(str(item), reason))

    def note(self, text):
        """Record a caveat about the whole build (e.g. "no patient ids in this layout")."""
        self.notes.append(text)

    def dropped_by_reason(self):
        """How many items were dropped for each reason."""
        return Counter(item.reason for item in self.dropped)

    def to_dict(self):
        """A JSON-ready dict."""
        return {
            "builder": self.builder,
            "kept": self.kept,
            "kept_by_label": dict(self.kept_by_label),
            "kept_by_task": {task: dict(counts) for task, counts in self.kept_by_task.items()},
            "dropped": len(self.dropped),
            "dropped_by_reason": dict(self.dropped_by_reason()),
            "dropped_items": [dataclasses.asdict(item) for item in self.dropped],
            "notes": list(self.notes),
        }

    def to_json(self, path, overwrite=True):
        """Write `to_dict()` as JSON at `path`, atomically; returns the path."""
        with atomic_write(path, "w", overwrite=overwrite) as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")
        return path

    def summary(self):
        """Readable text: counts kept per label, dropped per reason, and the dropped files."""
        noun = "image" if self.kept == 1 else "images"
        lines = [f"{self.builder}: kept {self.kept} {noun}, dropped {len(self.dropped)}"]
        if len(self.kept_by_task) > 1:  # a film kept for both tasks is two rows: count them apart
            for task, counts in sorted(self.kept_by_task.items()):
                lines.append(f"  kept for {_TASK_NAMES.get(task, task)} by label: {_counts(counts)}")
        elif self.kept_by_label:
            lines.append(f"  kept by label: {_counts(self.kept_by_label)}")
        for reason, count in self.dropped_by_reason().most_common():
            lines.append(f"  dropped: {reason} {count}")
            items = [item.item for item in self.dropped if item.reason == reason]
            lines.extend(f"    {item}" for item in items[:_MAX_LISTED_PER_REASON])
            if len(items) > _MAX_LISTED_PER_REASON:
                lines.append(f"    ... and {len(items) - _MAX_LISTED_PER_REASON} more")
        lines.extend(f"  note: {text}" for text in self.notes)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


_TASK_NAMES = {"cls": "classification (cls)", "seg": "segmentation (seg, with lung masks)"}


def _counts(counter):
    return ", ".join(f"{label} {n}" for label, n in sorted(counter.items()))


class BuiltManifest(NamedTuple):
    """What every builder returns: the manifest and the report (unpacks as `manifest, report`)."""

    manifest: object
    report: BuildReport
