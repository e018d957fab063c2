"""The outputs models made: one row per output image (in the gallery or staged on a canvas), and one per
other output (text, video, audio, other files) so no paid prediction is lost over its output's shape."""
from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow
from app.replicate.client import PLAYABLE_TYPES


class Generation(db.Model):
    """One output image with everything needed to make it again."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    model_ref: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int | None]
    output_index: Mapped[int] = mapped_column(default=0)
    path: Mapped[str] = mapped_column(String(500))  # relative to DATA_DIR
    width: Mapped[int]
    height: Mapped[int]
    # in_gallery is False for canvas variations until the user keeps one.
    in_gallery: Mapped[bool] = mapped_column(default=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class OutputFile(db.Model):
    """One non-image output of a job: ``kind`` "text" keeps ``text``; "video", "audio" and "file"
    keep a file at ``path`` (relative to DATA_DIR) of ``content_type`` and ``size`` bytes."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    model_ref: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200), default="")  # where it sat in the output: "0", "video"
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(100), default="text/plain")
    path: Mapped[str | None] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(default=0)
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    @property
    def playable(self) -> bool:
        return self.content_type in PLAYABLE_TYPES

    @property
    def description(self) -> str:
        """"a ZIP archive", "a video (video/quicktime)": what the file is, for a sentence."""
        named = {"application/zip": "a ZIP archive", "application/pdf": "a PDF document",
                 "model/gltf-binary": "a 3D model (glTF)", "application/x-tar": "a tar archive",
                 "application/gzip": "a gzip archive", "application/json": "a JSON file",
                 "text/plain": "a text file", "application/octet-stream": "a file of unknown type"}
        if self.content_type in named:
            return named[self.content_type]
        return f"a{'n' if self.kind[0] in 'aeiou' else ''} {self.kind} ({self.content_type})"

    @property
    def download_name(self) -> str:
        suffix = Path(self.path or "").suffix or ".bin"
        key = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.key)[:40]
        return f"tessera-{self.job_id or self.id}{'-' + key if key else ''}{suffix}"
