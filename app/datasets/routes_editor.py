"""The image editor: caption as tags or text, saved as you go with a version check; autocomplete."""
import logging
import re
import threading
from pathlib import Path

from flask import abort, current_app, flash, jsonify, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm.exc import StaleDataError

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, buckets, index
from app.datasets.captions import (CAPTION_PROBLEMS, DETECTABLE_ENCODINGS, CaptionConflict, CaptionWriteError,
                                   decode_as, encoding_name, read_caption_bytes)
from app.datasets.grid import GridFilter, neighbours, progress_for, remember, tag_counts_matching, tag_page
from app.datasets.history import ImageGone, confirm_encoding, refresh_caption, save_caption
from app.datasets.suggestions import accept_suggestions, clear_suggestions
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused
from app.datasets.routes import data_dir, root_of
from app.datasets.trash import read_entry
from app.datasets.trashing import trash_indexed_image
from app.datasets.tagcomplete import DATASET_SOURCE, TagIndex, dataset_suggestions
from app.datasets.taglists import TagListCache
from app.datasets.tagexpr import normalise_tag
from app.datasets.tags import add_tags, apply_trigger, move_to_front, remove_tag, split_tags
from app.extensions import db
from app.htmx import is_htmx, message, redirect_page, retarget

log = logging.getLogger(__name__)
SUGGESTIONS = 12
TAG_PANEL = 150  # the dataset's most used tags shown beside the image (the find box covers the rest)
_tag_lists: dict[tuple[str, ...], TagListCache] = {}
_tag_lists_lock = threading.Lock()
_VERSION = re.compile(r"[0-9a-f]{32}|too-large-\d{1,20}")


def tag_list_cache() -> TagListCache | None:
    """The configured tag lists (TESSERA_TAG_LISTS) as one cache per process, made on first need."""
    paths = tuple(current_app.config.get("TAG_LISTS", []))
    if not paths:
        return None
    with _tag_lists_lock:
        cache = _tag_lists.get(paths)
        if cache is None:
            cache = _tag_lists[paths] = TagListCache(paths, Path(current_app.config["DATA_DIR"]) / "cache" / "tag-lists")
    return cache


def tag_list_index() -> TagIndex | None:
    """The lists, or None while they are still being read into the cache (in the background)."""
    cache = tag_list_cache()
    return cache.index() if cache is not None else None


def _version(value: str | None) -> str | None:
    """The caption version a form sent: None for "there was no caption file"; anything that is
    no version at all becomes one no file has, so the save is a conflict rather than a guess."""
    if not value:
        return None
    return value if _VERSION.fullmatch(value) else "unknown"


GONE = ("This image is no longer in the dataset: it was moved to the trash (in another tab?) or deleted on disk. "
        "Restore it from the dataset's trash, or go back to the grid.")


def image_or_gone(dataset: Dataset, image_id: int) -> DatasetImage:
    """The dataset's image, or a 404 that says the image is gone. An HTMX request (a save, a chip,
    "reviewed" from an editor left open in another tab) gets it in the editor's status line, so
    the text typed there stays on screen."""
    image = db.session.get(DatasetImage, image_id)
    if image is not None and image.dataset_id == dataset.id:
        return image
    if is_htmx():
        abort(_gone())
    abort(404, description=GONE)


def _gone():
    """The editor's status line saying the image is gone (404), in place of what was asked."""
    return retarget(make_response(render_template("datasets/_save_status.html", error=GONE), 404), "#save-status")


def _browse(dataset: Dataset, image: DatasetImage) -> dict:
    """Where the image stands in the user's remembered filter and order: previous/next ids, its
    position, the total, and whether it is outside the filter (then the arrows go through all images)."""
    progress = progress_for(current_user.id, dataset.id)
    grid_filter = GridFilter.from_args(progress.filters if progress else {})
    if grid_filter.problem:  # a remembered filter that cannot be used is dropped: browse everything
        grid_filter = GridFilter()
        remember(current_user.id, dataset.id, grid_filter=grid_filter)
    previous_id, next_id, position, total = neighbours(dataset.id, grid_filter, image.id)
    outside_filter = grid_filter.active and position == 0
    matching = None
    if outside_filter:
        # The image is not among the filtered ones (opened from a link, or edited out of the filter):
        # say so and browse the whole dataset instead of stranding the user on "0 of N".
        matching = total
        previous_id, next_id, position, total = neighbours(dataset.id, GridFilter(sort=grid_filter.sort), image.id)
    return {"previous_id": previous_id, "next_id": next_id, "position": position, "total": total,
            "grid_filter": grid_filter, "outside_filter": outside_filter, "matching": matching}


@bp.app_template_global()
def just_trashed(dataset: Dataset):
    """The trash entry named by `?trashed=` (the image the user just moved there), or None once it
    is restored or emptied: `datasets/_trashed.html` offers to restore it (editor and grid)."""
    name = request.args.get("trashed")
    if not name:
        return None
    try:
        return read_entry(root_of(dataset), name)
    except (KeyError, OSError, PathRefused):
        return None


def editor_context(dataset, image, *, text: str | None = None, warning: str | None = None, note: str | None = None,
                   encoding: str | None = None):
    caption = image.caption if text is None else text
    caption = caption or ""
    caption_tags = index.caption_tags(caption)
    # The tag panel: the dataset's tags with counts; a tag is "on" when the caption has it in any
    # spelling (long hair / long_hair), and removing it removes the spelling the caption uses.
    present = {normalise_tag(tag): tag for tag in caption_tags}
    problems = [key for key in (image.caption_problems or "").split(",") if key]
    uncertain = "encoding_uncertain" in problems
    return {
        "dataset": dataset, "image": image, "text": caption, "tags": caption_tags,
        "version": (image.caption_version or "") if image.caption is not None else "",
        "warning": warning if warning is not None else image.caption_warning, "note": note,
        "trigger_missing": bool(dataset.trigger) and bool(caption) and apply_trigger(caption, dataset.trigger) != caption,
        "panel_tags": [(tag, count, present.get(normalise_tag(tag))) for tag, count in tag_page(dataset.id, limit=TAG_PANEL)[0]],
        "problems": [(key, CAPTION_PROBLEMS[key]) for key in problems if key in CAPTION_PROBLEMS and key != "not_utf8"],
        "uncertain": uncertain,
        "encodings": [(enc, encoding_name(enc)) for enc in DETECTABLE_ENCODINGS] if uncertain else [],
        "image_encoding": encoding,
    }


@bp.get("/<int:dataset_id>/images/<int:image_id>")
def editor(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    if request.args.get("clear_filter"):
        remember(current_user.id, dataset.id, grid_filter=GridFilter())
        return redirect(url_for("datasets.editor", dataset_id=dataset.id, image_id=image.id), 303)
    caption = refresh_caption(dataset, image, root_of(dataset))
    browse = _browse(dataset, image)
    remember(current_user.id, dataset.id, image_id=image.id)
    bucket = buckets.bucket_for(image.width, image.height) if image.width and image.height else None
    return render_template("datasets/editor.html", bucket=bucket, **browse,
                           **editor_context(dataset, image, warning=caption.warning if caption else None,
                                            encoding=caption.encoding if caption else None))


@bp.post("/<int:dataset_id>/images/<int:image_id>/editor-trash")
def editor_trash(dataset_id, image_id):
    """Move the image (and its own caption files) to the trash, then open the next image of the
    user's filter and order (the grid after the last one), offering to restore it there."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = db.session.get(DatasetImage, image_id)
    grid = url_for("datasets.show", dataset_id=dataset.id)
    if image is None or image.dataset_id != dataset.id:
        flash("That image is already gone from the dataset (moved to the trash in another tab?); "
              "the trash can restore it.", "info")
        return redirect(grid, 303)
    next_id = _browse(dataset, image)["next_id"]
    here = url_for("datasets.editor", dataset_id=dataset.id, image_id=image.id)
    try:
        trashed = trash_indexed_image(dataset, image, root_of(dataset))
    except FileNotFoundError:
        flash(f"{image.relpath} is not on disk any more (deleted or moved outside Tessera); rescan the dataset.", "error")
        return redirect(here, 303)
    except (OSError, PathRefused) as exc:
        flash(f"Could not move {image.relpath} to the trash: {getattr(exc, 'message', None) or exc}", "error")
        return redirect(here, 303)
    if next_id is not None:
        return redirect(url_for("datasets.editor", dataset_id=dataset.id, image_id=next_id,
                                trashed=trashed.entry.name), 303)
    return redirect(url_for("datasets.show", dataset_id=dataset.id, trashed=trashed.entry.name), 303)


@bp.post("/<int:dataset_id>/images/<int:image_id>/encoding")
def confirm_reading(dataset_id, image_id):
    """The user chose how an uncertain caption reads: rewrite it as UTF-8 (one undoable edit)."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    encoding = request.form.get("encoding", "")
    try:
        confirm_encoding(dataset, image, encoding, root=root_of(dataset), data_dir=data_dir(), user_id=current_user.id)
    except (LookupError, UnicodeDecodeError):
        return message(f"The caption does not read as {encoding_name(encoding)}; choose another encoding.", 422)
    except FileNotFoundError:
        return message("The caption file is gone; rescan the dataset.", 404)
    except CaptionConflict:
        db.session.rollback()
        return message("The caption changed on disk meanwhile; reload the page.", 409)
    except CaptionWriteError as exc:
        db.session.rollback()
        return message(exc.message, 403)
    return render_template("datasets/_editor_panel.html",
                           **editor_context(dataset, image, note=f"Read as {encoding_name(encoding)} and saved as UTF-8"))


@bp.get("/<int:dataset_id>/preview")
def preview(dataset_id):
    """How an uncertain caption reads in another encoding (the editor's encoding picker)."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, request.args.get("image_id", 0, type=int), dataset_id=dataset.id)
    encoding = request.args.get("encoding", "")
    path = index.resolve_image(root_of(dataset), index.caption_relpath_for(dataset, image.relpath, image.caption_relpath))
    try:
        text = decode_as(read_caption_bytes(path), encoding).text
    except (LookupError, UnicodeDecodeError, OSError):
        text = None
    return render_template("datasets/_reading.html", text=text, encoding=encoding_name(encoding))


def _save(dataset, image, text: str, version: int | None):
    """Save and answer with a status (plus the new version and chips); conflicts and errors as 4xx."""
    try:
        save_caption(dataset, image, text, version, root=root_of(dataset), data_dir=data_dir(),
                           user_id=current_user.id)
    except CaptionConflict as exc:
        db.session.rollback()
        response = make_response(render_template("datasets/_conflict.html", dataset=dataset, image=image, mine=text,
                                                 theirs=exc.current_text, theirs_version=exc.current_version or ""), 409)
    except ImageGone:
        db.session.rollback()
        return _gone()
    except CaptionWriteError as exc:
        db.session.rollback()
        # 507 for a full disk: nothing is wrong with the file, and the text stays in the editor.
        response = make_response(render_template("datasets/_save_status.html", error=exc.message),
                                 507 if exc.disk_full else 403)
    else:
        return None
    # Chip actions target the whole editor; a problem only replaces the status line.
    return retarget(response, "#save-status")


@bp.post("/<int:dataset_id>/images/<int:image_id>/caption")
def save_text(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    text = request.form.get("text", "").replace("\r\n", "\n")
    version = _version(request.form.get("version"))
    # A repeated save of the same text writes nothing, unless the file still needs converting to UTF-8.
    if "encoding_uncertain" in (image.caption_problems or ""):
        # Its text on screen is a guess; saving it would write the guess. The reading comes first.
        status = render_template("datasets/_save_status.html", error="Confirm how this caption reads (above) before editing it.")
        return retarget(make_response(status, 409), "#save-status")
    unchanged = (text == (image.caption or "") and version == image.caption_version and image.caption is not None
                 and not image.caption_warning)
    if not unchanged:
        failed = _save(dataset, image, text, version)
        if failed is not None:
            return failed
    return render_template("datasets/_saved.html", **editor_context(dataset, image))


@bp.post("/<int:dataset_id>/images/<int:image_id>/tags")
def edit_tags(dataset_id, image_id):
    """Chip actions work on the text the editor holds, so nothing typed and not yet saved is lost."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    text = request.form.get("text", image.caption or "").replace("\r\n", "\n")
    tag = request.form.get("tag", "").strip()
    action = request.form.get("action")
    if "encoding_uncertain" in (image.caption_problems or "") and action != "trigger":
        return message("Confirm how this caption reads (above) before editing its tags.", 409)
    if action == "add":
        new = add_tags(text, split_tags(tag))
    elif action == "remove":
        new = remove_tag(text, tag)
    elif action == "front":
        new = move_to_front(text, tag)
    elif action == "trigger":
        new = text
    else:
        return message("Unknown tag action.", 400)
    if dataset.trigger:
        new = apply_trigger(new, dataset.trigger)
    if new != (image.caption or ""):
        failed = _save(dataset, image, new, _version(request.form.get("version")))
        if failed is not None:
            return failed
    return render_template("datasets/_editor_panel.html", **editor_context(dataset, image, note="Saved"))


@bp.post("/<int:dataset_id>/images/<int:image_id>/reviewed")
def toggle_reviewed(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    image.reviewed = request.form.get("reviewed", "1" if not image.reviewed else "0") == "1"
    try:
        db.session.commit()
    except StaleDataError:  # the row went to the trash from another tab since it was read
        db.session.rollback()
        return _gone()
    response = make_response(render_template("datasets/_reviewed.html", dataset=dataset, image=image))
    if request.form.get("then") == "next" and request.form.get("next_id"):
        redirect_page(response, url_for("datasets.editor", dataset_id=dataset.id,
                                        image_id=request.form.get("next_id", type=int)))
    return response


@bp.post("/<int:dataset_id>/images/<int:image_id>/suggestion")
def suggestion(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = image_or_gone(dataset, image_id)
    if request.form.get("action") == "accept":
        outcome = accept_suggestions(dataset, [image.id], root=root_of(dataset), data_dir=data_dir(),
                                           user_id=current_user.id)
        note = "Suggestion accepted" if outcome.changed else outcome.summary
    else:
        clear_suggestions([image.id])
        note = "Suggestion discarded"
    db.session.refresh(image)
    return render_template("datasets/_editor_panel.html", **editor_context(dataset, image, note=note))


@bp.get("/<int:dataset_id>/complete")
def complete(dataset_id):
    """Suggestions for the tag combobox as JSON: the dataset's own tags first, then the tag lists.

    ``{"suggestions": [{"tag", "count", "source", "new", "alias", "category"}]}``: `count` is images
    in the dataset for dataset tags and the booru post count for list tags; `new` marks a tag the
    dataset does not have yet (in any spelling).
    """
    dataset = owned_or_404(Dataset, dataset_id)
    typed = request.args.get("tag", "")
    last = typed.rpartition(",")[2][:200]  # a tag, not a text: longer input is cut, not searched for
    counts = tag_counts_matching(dataset.id, last)
    lists = tag_list_index()
    if not last.strip():
        suggestions = []
    elif lists is None:  # no lists, or they are still being read: the dataset's own tags answer now
        suggestions = dataset_suggestions(normalise_tag(last), counts, SUGGESTIONS)
    else:
        suggestions = lists.suggest(last, counts, SUGGESTIONS)
    known = {normalise_tag(tag) for tag in counts}
    return jsonify(suggestions=[
        {"tag": s.tag, "count": s.count, "source": s.source, "alias": s.matched_alias, "category": s.category,
         "new": s.source != DATASET_SOURCE and normalise_tag(s.tag) not in known}
        for s in suggestions
    ])
