"""What a caption edit over many images did: changed, skipped and why, as one summary."""
from __future__ import annotations

from dataclasses import dataclass, field

from app.datasets.models import CaptionBatch

NAMES_KEPT = 50  # names of skipped captions kept per kind for the summary (the counts stay exact)


@dataclass
class EditOutcome:
    """The outcome of one caption edit over many images (one history batch)."""

    batch: CaptionBatch | None = None  # None when nothing changed
    changed: int = 0
    conflicts: list[str] = field(default_factory=list)  # image relpaths changed on disk since the scan
    errors: list[str] = field(default_factory=list)  # messages (read-only files, refused paths)
    # Captions left byte-identical because their encoding is a guess (caption relpaths).
    uncertain: list[str] = field(default_factory=list)
    # How many names each list above left out (a dataset-wide edit keeps only the first NAMES_KEPT).
    more: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        """How many captions were skipped as `kind` ("conflicts", "errors", "uncertain")."""
        return len(getattr(self, kind)) + self.more.get(kind, 0)

    def add(self, other: EditOutcome) -> None:
        """Fold the outcome of one more chunk of the same edit into this one."""
        self.batch = other.batch or self.batch
        self.changed += other.changed
        for kind in ("conflicts", "errors", "uncertain"):
            mine, theirs = getattr(self, kind), getattr(other, kind)
            room = max(NAMES_KEPT - len(mine), 0)
            mine += theirs[:room]
            dropped = len(theirs) - min(room, len(theirs)) + other.more.get(kind, 0)
            if dropped:
                self.more[kind] = self.more.get(kind, 0) + dropped

    @property
    def summary(self) -> str:
        parts = [f"{self.changed:,} caption{'s' if self.changed != 1 else ''} changed"]
        if self.uncertain:
            n = self.count("uncertain")
            parts.append(f"{n:,} left unchanged because their encoding is uncertain (open each in "
                         f"the editor to confirm how it reads): {', '.join(self.uncertain[:10])}"
                         + (" …" if n > 10 else ""))
        if self.conflicts:
            parts.append(f"{self.count('conflicts'):,} skipped because they changed on disk since the last scan "
                         f"(rescan, then try again): {', '.join(self.conflicts[:5])}")
        if self.errors:
            parts.append(f"{self.count('errors'):,} could not be written: {'; '.join(self.errors[:3])}")
        return "; ".join(parts)

    def to_json(self) -> dict:
        """The outcome as a job result keeps it (names capped at NAMES_KEPT per kind)."""
        return {"changed": self.changed, "batch_id": self.batch.id if self.batch else None,
                **{kind: getattr(self, kind)[:NAMES_KEPT] for kind in ("conflicts", "errors", "uncertain")},
                **{f"{kind}_total": self.count(kind) for kind in ("conflicts", "errors", "uncertain")}}
