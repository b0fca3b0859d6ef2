"""Counts of what a loader kept and dropped, so that nothing is dropped silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadReport:
    """What a dataset loader read, kept and dropped (with reasons), per source."""

    source: str
    read: int = 0
    dropped: Counter = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)
    skipped_files: dict[str, str] = field(default_factory=dict)  # file -> why it gave no rows (unreadable, empty)
    decontamination: dict = field(default_factory=dict)  # policy and rows overlapping the PubMedQA test set
    repeated: dict[str, int] = field(default_factory=dict)  # why -> training rows added as copies (label balancing)

    @property
    def kept(self) -> int:
        return self.read - sum(self.dropped.values())

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        splits = ", ".join(f"{name} {n}" for name, n in self.splits.items())
        line = f"{self.source}: read {self.read}, kept {self.kept} ({splits}); dropped: {dropped}"
        if self.skipped_files:
            line += f"; {len(self.skipped_files)} file(s) gave no rows (unreadable or empty)"
        if self.repeated:
            line += "; added as copies: " + ", ".join(f"{n} {why}" for why, n in self.repeated.items())
        return line

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "splits": dict(self.splits),
            "skipped_files": dict(self.skipped_files),
            "decontamination": dict(self.decontamination),
            "repeated": dict(self.repeated),
        }
