"""Datasets, their indexed images and tags, caption history and each user's place in a dataset."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow


class Dataset(db.Model):
    """A folder of images with same-name caption files, under a dataset root or managed by Tessera."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    root: Mapped[str] = mapped_column(String(1000))  # absolute, real path of the folder
    # True for folders Tessera made from an uploaded zip (DATA_DIR/uploaded-datasets/<id>).
    managed: Mapped[bool] = mapped_column(default=False)
    caption_ext: Mapped[str] = mapped_column(String(16), default=".txt")  # written for new captions
    trigger: Mapped[str] = mapped_column(String(200), default="")
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    image_count: Mapped[int] = mapped_column(default=0)
    scanned_at: Mapped[datetime | None]
    # When the index's captions or tags last changed other than by a history step (a scan that
    # found changes, the editor reading a caption edited elsewhere): the tag count caches' key.
    tags_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetImage(db.Model):
    __table_args__ = (
        UniqueConstraint("dataset_id", "relpath"),
        Index("ix_dataset_image_dataset_hash", "dataset_id", "content_hash"),
        Index("ix_dataset_image_dataset_tags", "dataset_id", "tag_count"),
        Index("ix_dataset_image_dataset_reviewed", "dataset_id", "reviewed"),  # the grid's reviewed count
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), index=True)
    relpath: Mapped[str] = mapped_column(String(1000))  # posix, relative to the dataset root
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    phash: Mapped[int | None] = mapped_column(BigInteger)  # signed 64-bit pHash
    error: Mapped[str | None] = mapped_column(Text)  # corrupt, too large: the image is listed, not used
    caption_relpath: Mapped[str | None] = mapped_column(String(1000))
    caption: Mapped[str | None] = mapped_column(Text)  # None: no caption file
    # captions.caption_version (a content hash) of the file when last read or written: the version
    # an editor saves against. A hash, not an mtime: two writes in one clock tick still differ.
    caption_version: Mapped[str | None] = mapped_column(String(64))
    caption_warning: Mapped[str | None] = mapped_column(Text)
    # The caption file's size and mtime when its content was last read or written: a rescan
    # re-reads only captions whose stat differs (None: read it next time).
    caption_size: Mapped[int | None] = mapped_column(BigInteger)
    caption_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    tag_count: Mapped[int] = mapped_column(default=0)
    reviewed: Mapped[bool] = mapped_column(default=False)
    thumb_ready: Mapped[bool] = mapped_column(default=False)
    suggestion: Mapped[str | None] = mapped_column(Text)  # an auto-caption waiting to be accepted
    # EXIF orientation 1-8 (width and height above are already upright; export turns the pixels).
    orientation: Mapped[int] = mapped_column(default=1, server_default="1")
    alpha: Mapped[float] = mapped_column(default=0.0, server_default="0")  # share of pixels not fully opaque
    # captions.CAPTION_PROBLEMS keys, comma-separated ("bom,multi_line"); "" when none.
    caption_problems: Mapped[str] = mapped_column(String(200), default="", server_default="")
    pairing_note: Mapped[str | None] = mapped_column(Text)  # a caption shared, doubled or matched by case only
    excluded: Mapped[bool] = mapped_column(default=False, server_default=false())  # left out of exports


class DatasetTag(db.Model):
    """The distinct tags of each image's caption, so filters and counts run in SQL."""

    __table_args__ = (
        Index("ix_dataset_tag_key", "dataset_id", "key", "image_id"),
        Index("ix_dataset_tag_tag", "dataset_id", "tag"),
    )

    image_id: Mapped[int] = mapped_column(ForeignKey("dataset_image.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(Text, primary_key=True)  # as written in the caption
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)  # tagexpr.normalise_tag(tag)


class CaptionBatch(db.Model):
    """One undoable step: a single caption edit, or a dataset-wide action over many captions."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(32))  # edit, bulk, undo, suggestion
    image_count: Mapped[int] = mapped_column(default=0)
    undo_of: Mapped[str | None] = mapped_column(String(32))
    undone_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CaptionEdit(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("caption_batch.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("dataset_image.id", ondelete="CASCADE"), index=True)
    before: Mapped[str | None] = mapped_column(Text)  # None: there was no caption file
    after: Mapped[str | None] = mapped_column(Text)


class DatasetProgress(db.Model):
    """Where a user was in a dataset (image and filters), to resume there."""

    __table_args__ = (UniqueConstraint("user_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), index=True)
    last_image_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_image.id", ondelete="SET NULL"))
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
