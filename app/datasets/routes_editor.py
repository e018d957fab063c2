"""The image editor: caption as tags or text, saved as you go with a version check; autocomplete."""
import logging
from pathlib import Path

from flask import current_app, make_response, render_template, request, url_for
from flask_login import current_user

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, index
from app.datasets.captions import CaptionConflict, CaptionWriteError
from app.datasets.grid import GridFilter, neighbours, progress_for, remember, tag_counts_matching
from app.datasets.history import refresh_caption, save_caption
from app.datasets.suggestions import accept_suggestions, clear_suggestions
from app.datasets.models import Dataset, DatasetImage
from app.datasets.routes import data_dir, root_of
from app.datasets.tagcomplete import TagIndex
from app.datasets.tags import add_tags, apply_trigger, move_to_front, remove_tag, split_tags
from app.extensions import db
from app.htmx import message, redirect_page, retarget

log = logging.getLogger(__name__)
SUGGESTIONS = 12
_tag_lists: dict[tuple[str, ...], TagIndex] = {}


def tag_list_index() -> TagIndex:
    """The configured tag lists (TESSERA_TAG_LISTS), loaded once per process."""
    paths = tuple(current_app.config.get("TAG_LISTS", []))
    if paths not in _tag_lists:
        tag_index = TagIndex()
        for path in paths:
            try:
                tag_index.add_csv(Path(path))
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("Tag list %s not loaded: %s", path, exc)
        _tag_lists[paths] = tag_index
    return _tag_lists[paths]


def _version(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def editor_context(dataset, image, *, text: str | None = None, warning: str | None = None, note: str | None = None):
    caption = image.caption if text is None else text
    caption = caption or ""
    return {
        "dataset": dataset, "image": image, "text": caption, "tags": index.caption_tags(caption),
        "version": image.caption_mtime_ns if image.caption is not None else "",
        "warning": warning if warning is not None else image.caption_warning, "note": note,
        "trigger_missing": bool(dataset.trigger) and bool(caption) and apply_trigger(caption, dataset.trigger) != caption,
    }


@bp.get("/<int:dataset_id>/images/<int:image_id>")
def editor(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    caption = refresh_caption(dataset, image, root_of(dataset))
    progress = progress_for(current_user.id, dataset.id)
    grid_filter = GridFilter.from_args(progress.filters if progress else {})
    if grid_filter.problem:  # a saved filter that no longer parses: browse everything
        grid_filter = GridFilter()
    previous_id, next_id, position, total = neighbours(dataset.id, grid_filter, image.id)
    remember(current_user.id, dataset.id, image_id=image.id)
    return render_template("datasets/editor.html", previous_id=previous_id, next_id=next_id, position=position,
                           total=total, grid_filter=grid_filter,
                           **editor_context(dataset, image, warning=caption.warning if caption else None))


def _save(dataset, image, text: str, version: int | None):
    """Save and answer with a status (plus the new version and chips); conflicts and errors as 4xx."""
    try:
        save_caption(dataset, image, text, version, root=root_of(dataset), data_dir=data_dir(),
                           user_id=current_user.id)
    except CaptionConflict as exc:
        db.session.rollback()
        response = make_response(render_template("datasets/_conflict.html", dataset=dataset, image=image, mine=text,
                                                 theirs=exc.current_text, theirs_version=exc.current_mtime_ns or ""), 409)
    except CaptionWriteError as exc:
        db.session.rollback()
        response = make_response(render_template("datasets/_save_status.html", error=exc.message), 403)
    else:
        return None
    # Chip actions target the whole editor; a problem only replaces the status line.
    return retarget(response, "#save-status")


@bp.post("/<int:dataset_id>/images/<int:image_id>/caption")
def save_text(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    text = request.form.get("text", "").replace("\r\n", "\n")
    version = _version(request.form.get("version"))
    # A repeated save of the same text writes nothing, unless the file still needs converting to UTF-8.
    unchanged = (text == (image.caption or "") and version == image.caption_mtime_ns and image.caption is not None
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
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    text = request.form.get("text", image.caption or "").replace("\r\n", "\n")
    tag = request.form.get("tag", "").strip()
    action = request.form.get("action")
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
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    image.reviewed = request.form.get("reviewed", "1" if not image.reviewed else "0") == "1"
    db.session.commit()
    response = make_response(render_template("datasets/_reviewed.html", dataset=dataset, image=image))
    if request.form.get("then") == "next" and request.form.get("next_id"):
        redirect_page(response, url_for("datasets.editor", dataset_id=dataset.id,
                                        image_id=request.form.get("next_id", type=int)))
    return response


@bp.post("/<int:dataset_id>/images/<int:image_id>/suggestion")
def suggestion(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
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
    """<option>s for the tag input's datalist: the dataset's own tags first, then the tag lists."""
    dataset = owned_or_404(Dataset, dataset_id)
    typed = request.args.get("tag", "")
    head, _, last = typed.rpartition(",")
    prefix = f"{head}, " if head.strip() else ""
    counts = tag_counts_matching(dataset.id, last)
    suggestions = tag_list_index().suggest(last, counts, SUGGESTIONS) if last.strip() else []
    return render_template("datasets/_suggestions.html", suggestions=suggestions, prefix=prefix)
