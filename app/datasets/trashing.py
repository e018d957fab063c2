"""Moving an indexed image to the dataset's trash: its files first, then its row and tags.

Shared by Health's duplicate groups and the image editor, so both move the same files and keep the
tag counts right the same way. (The trash folder itself: `trash`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app.datasets import index
from app.datasets.captionwrite import folder_lock
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import resolve_within
from app.datasets.trash import TrashEntry, move_to_trash, own_captions
from app.extensions import db
from app.models import utcnow


@dataclass(frozen=True)
class Trashed:
    entry: TrashEntry
    kept_captions: tuple[str, ...]  # caption files left in place because other images pair with them
    shared_with: tuple[str, ...]  # those other images

    @property
    def summary(self) -> str:
        """What moved, in words: "Moved a.png and a.txt to the trash"."""
        moved = " and ".join([self.entry.image, ", ".join(self.entry.captions)] if self.entry.captions
                             else [self.entry.image])
        kept = (f" ({', '.join(self.kept_captions)} stays: {', '.join(self.shared_with)} uses it too)"
                if self.kept_captions else "")
        return f"Moved {moved} to the trash{kept}"


def trash_indexed_image(dataset: Dataset, image: DatasetImage, root: Path) -> Trashed:
    """Move `image` and the caption files that are its alone (`a.txt`, `a.caption`: every one that
    fits its name, not only the one Tessera reads) to the trash, then drop its row and tags so the
    grid, the filter and the tag counts no longer hold it.

    Captions another image also pairs with (`a.png` beside `a.jpg`, or a caption the index shares)
    stay where they are. Raises FileNotFoundError when the image file is gone (moved to the trash
    in another tab, or deleted on disk), PathRefused / OSError as `move_to_trash` does; the row is
    dropped only after the files moved, all under the folder's caption lock.
    """
    with folder_lock(resolve_within([Path(root)], image.relpath).parent):
        # The caption lock: a save from an editor open in another tab waits, then finds the image
        # gone (history.save_caption) instead of writing a caption beside nothing.
        return _trash(dataset, image, Path(root))


def _trash(dataset: Dataset, image: DatasetImage, root: Path) -> Trashed:
    found = own_captions(root, image.relpath)
    sharing_rows = db.session.scalars(select(DatasetImage.relpath).where(
        DatasetImage.dataset_id == dataset.id, DatasetImage.caption_relpath == image.caption_relpath,
        DatasetImage.id != image.id).limit(5)).all() if image.caption_relpath else []
    sharers = tuple(dict.fromkeys((*found.shared_with, *sharing_rows)))
    shared = bool(sharers)
    captions = () if shared else found.captions
    primary = image.caption_relpath if image.caption_relpath in captions else (captions[0] if captions else None)
    entry = move_to_trash(root, image.relpath, primary, content_hash=image.content_hash,
                          more_captions=tuple(c for c in captions if c != primary))
    # The tag count caches are keyed on this too (grid._tag_state): counts drop with the image.
    dataset.tags_changed_at = utcnow()
    index.forget_images(dataset, [image.id])
    return Trashed(entry, found.captions if shared else (), sharers)
