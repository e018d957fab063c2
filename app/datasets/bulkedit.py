"""Dataset-wide caption edits as data: the bulk form's actions and Health's fixes and merges.

A `BulkEdit` is what the user asked for (action, its inputs, which images) in JSON, so the same
edit runs in the request when it touches few captions and as a ``datasets.bulk`` job when it
touches many (more than the DATASET_BULK_INLINE_LIMIT setting, 1,000 by default). Either way
`history.edit_captions` streams it in chunks and records ONE undoable batch; undoing a large
batch is a ``datasets.undo`` job the same way.

Why small edits stay in the request: renaming a tag in 20 captions takes a few milliseconds, and
answering at once (the grid comes back already changed) beats a queue round trip and a status
poll. Past a thousand captions the request would keep a web worker busy for seconds to
minutes (and die with it on a timeout), so the work goes to a worker and the page follows it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from app.datasets import saferegex, tags
from app.datasets.grid import GridFilter, filtered_select
from app.datasets.history import NORMALISERS, edit_captions, undo_batch
from app.datasets.index import IMAGES, TAGS, dataset_root, existing_ids
from app.datasets.models import CaptionBatch, Dataset
from app.datasets.outcome import EditOutcome
from app.datasets.paths import PathRefused
from app.datasets.tasks import owner_roots
from app.extensions import db
from app.jobs.queues import INTERACTIVE_CAPTIONS
from app.jobs.runner import JobFailed, enqueue_job, job_run

# Health's one-click fixes: problem key -> what the button says (and the history step is called).
FIXES = {
    "bom": "Rewrite without the byte order mark",
    "not_utf8": "Convert to UTF-8",
    "first_line_empty": "Remove the blank first line",
}

ACTIONS = ("rename", "delete", "add", "remove", "replace", "normalise", "trigger", "fix", "merge")
_FIELDS = ("old", "new", "tags", "position", "find", "replace", "regex", "normaliser", "problem", "into")
SCOPES = ("all", "filtered", "selected")


@dataclass(frozen=True)
class BulkEdit:
    """One dataset-wide edit as the user asked for it; `params()` / `from_params` round-trip it as JSON.

    `fields` holds the action's inputs as submitted (``old``, ``new``, ``tags``, ``position``,
    ``find``, ``replace``, ``regex``, ``normaliser``, ``problem``, ``into``, ``variants`` list,
    and ``trigger``: the dataset's trigger word when the user asked). `scope` is "all",
    "filtered" (by `filter_args`, the grid's query) or "selected" (`ids`).
    """

    action: str
    fields: dict = field(default_factory=dict)
    scope: str = "all"
    filter_args: dict = field(default_factory=dict)
    ids: tuple[int, ...] = ()

    @classmethod
    def from_form(cls, form, *, action: str | None = None, trigger: str = "") -> BulkEdit:
        """Read a submitted form (a werkzeug MultiDict or anything with ``get`` and ``getlist``)."""
        fields = {name: form.get(name, "") for name in _FIELDS if form.get(name) is not None}
        fields["variants"] = [v for v in form.getlist("variants") if v.strip()]
        fields["trigger"] = trigger
        scope = form.get("scope", "all")
        return cls(action=action or form.get("action", ""), fields=fields, scope=scope if scope in SCOPES else "all",
                   filter_args=GridFilter.from_args(form).to_args(),
                   ids=tuple(int(i) for i in form.getlist("ids") if i.isdigit()) if scope == "selected" else ())

    def params(self) -> dict:
        return {"action": self.action, "fields": self.fields, "scope": self.scope, "filter_args": self.filter_args,
                "ids": list(self.ids)}

    @classmethod
    def from_params(cls, params: Mapping) -> BulkEdit:
        return cls(action=params["action"], fields=dict(params.get("fields") or {}), scope=params.get("scope", "all"),
                   filter_args=dict(params.get("filter_args") or {}), ids=tuple(params.get("ids") or ()))


@dataclass
class Prepared:
    """A `BulkEdit` made ready to run: the edit, the images it may touch (None: all) and its name."""

    edit: Callable[[str], str]
    ids: list[int] | None
    description: str
    check: Callable[[str], str] | None = None  # run over every caption before any is written
    rewrite: bool = False  # write captions even when the text stays (re-encoding them)
    count: int = 0  # how many captions it reads (an upper bound of what it changes)


def _tag_list(text: str) -> list[str]:
    return tags.split_tags(text.replace("\n", ","))


def _scope_ids(dataset: Dataset, bulk: BulkEdit) -> tuple[list[int] | None, str]:
    if bulk.scope == "selected":
        ids = existing_ids(dataset.id, list(bulk.ids))
        if not ids:
            raise ValueError("Select some images first (tick their boxes), or choose “all” or “filtered”.")
        return ids, f"{len(ids):,} selected image{'s' if len(ids) != 1 else ''}"
    if bulk.scope == "filtered":
        grid_filter = GridFilter.from_args(bulk.filter_args)
        if grid_filter.problem:
            raise ValueError(grid_filter.problem)
        ids = db.session.scalars(filtered_select(dataset.id, grid_filter).order_by(None)).all()
        return ids, f"{len(ids):,} filtered image{'s' if len(ids) != 1 else ''}"
    return None, "all images"


def _having(dataset_id: int, names: list[str], ids: list[int] | None) -> list[int]:
    """Images whose caption has any of the tags `names` exactly (within `ids` when given): a tag
    action reads only those, so a sparse rename costs no pass over the dataset."""
    having = sorted(set(db.session.scalars(select(TAGS.c.image_id).where(
        TAGS.c.dataset_id == dataset_id, TAGS.c.tag.in_([n.strip() for n in names])))))
    return having if ids is None else sorted(set(having) & set(ids))


def prepare(dataset: Dataset, bulk: BulkEdit) -> Prepared:
    """The edit `bulk` describes, or ValueError (`tagexpr.TagExprError` included) saying what is
    wrong with its inputs. An invalid pattern fails here, before any caption is read."""
    f, action, trigger = bulk.fields, bulk.action, bulk.fields.get("trigger", "")
    ids, scope_text = _scope_ids(dataset, bulk)

    def keep_trigger(edit):
        return (lambda caption: tags.apply_trigger(edit(caption), trigger)) if trigger else edit

    check = None
    rewrite = False
    if action == "rename":
        old, new = f.get("old", "").strip(), f.get("new", "").strip()
        if not old or not new:
            raise ValueError("Give the tag to rename and its new name.")
        edit, ids, description = partial(tags.rename_tag, old=old, new=new), _having(dataset.id, [old], ids), \
            f"Rename tag “{old}” → “{new}”"
    elif action == "delete":
        tag = f.get("old", "").strip()
        if not tag:
            raise ValueError("Give the tag to delete.")
        edit, ids, description = partial(tags.remove_tag, tag=tag), _having(dataset.id, [tag], ids), f"Delete tag “{tag}”"
    elif action == "add":
        wanted = _tag_list(f.get("tags", ""))
        if not wanted:
            raise ValueError("Give one or more tags to add, separated by commas.")
        position = "front" if f.get("position") == "front" else "end"
        edit, description = keep_trigger(partial(tags.add_tags, tags=wanted, position=position)), f"Add {', '.join(wanted)}"
    elif action == "remove":
        unwanted = _tag_list(f.get("tags", ""))
        if not unwanted:
            raise ValueError("Give one or more tags to remove, separated by commas.")
        edit, description = partial(_remove_all, unwanted=unwanted), f"Remove {', '.join(unwanted)}"
    elif action == "replace":
        find, replace, regex = f.get("find", ""), f.get("replace", ""), f.get("regex") == "1"
        if not find:
            raise ValueError("Give the text to find.")
        tags.replace_text("", find, replace, regex)  # an invalid pattern fails before any file
        # One time budget over every caption first (a pattern that backtracks is stopped, with a
        # message, before anything is written: see saferegex); then each caption while writing.
        check = partial(tags.replace_text, find=find, replace=replace, regex=regex, deadline=saferegex.Deadline())
        edit = partial(tags.replace_text, find=find, replace=replace, regex=regex)
        description = f"Replace “{find[:200]}” with “{replace[:200]}”"
    elif action == "normalise":
        choice = NORMALISERS.get(f.get("normaliser", ""))
        if choice is None:
            raise ValueError("Choose how to normalise.")
        description, edit = choice
    elif action == "trigger":
        if not trigger:
            raise ValueError("Set the dataset's trigger word first (Settings).")
        edit, description = partial(tags.apply_trigger, trigger=trigger), f"Put the trigger “{trigger}” first"
    elif action == "fix":
        problem = f.get("problem", "")
        if problem not in FIXES:
            raise ValueError("Unknown fix.")
        ids = _with_problem(dataset.id, problem, ids)
        # The text stays for the others; writing it again drops the BOM and turns the bytes into UTF-8.
        edit = tags.drop_leading_blank_lines if problem == "first_line_empty" else _same
        rewrite, description = problem != "first_line_empty", FIXES[problem]
    elif action == "merge":
        into = f.get("into", "").strip()
        variants = [v.strip() for v in f.get("variants", []) if v.strip() and v.strip() != into]
        if not into or not variants:
            raise ValueError("Choose the spelling to keep and the ones to merge into it.")
        edit = partial(tags.merge_variants, variants=variants, into=into)
        ids, description = _having(dataset.id, [into, *variants], ids), f"Merge {', '.join(variants)} into “{into}”"
    else:
        raise ValueError("Unknown action.")
    count = len(ids) if ids is not None else db.session.scalar(
        select(func.count()).where(IMAGES.c.dataset_id == dataset.id))
    return Prepared(edit, ids, f"{description} ({scope_text})", check=check, rewrite=rewrite, count=count)


def _remove_all(caption: str, unwanted: list[str]) -> str:
    for tag in unwanted:
        caption = tags.remove_tag(caption, tag)
    return caption


def _same(caption: str) -> str:
    return caption


def _with_problem(dataset_id: int, problem: str, ids: list[int] | None) -> list[int]:
    having = db.session.scalars(select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset_id,
                                                          IMAGES.c.caption_problems.contains(problem))).all()
    return having if ids is None else sorted(set(having) & set(ids))


def apply(dataset: Dataset, prepared: Prepared, *, root: Path, data_dir: Path, user_id: int,
          on_progress: Callable[[int], None] | None = None) -> EditOutcome:
    """Run a prepared edit (see `history.edit_captions`); ValueError when the pattern fails."""
    return edit_captions(dataset, prepared.ids, prepared.edit, root=root, data_dir=data_dir, user_id=user_id,
                         description=prepared.description, check=prepared.check, rewrite=prepared.rewrite,
                         on_progress=on_progress)


def enqueue_bulk_edit(dataset: Dataset, bulk: BulkEdit, prepared: Prepared, *, user_id: int):
    """Queue `bulk` as a ``datasets.bulk`` job (raises `QueueUnavailable`); returns the Job row."""
    return enqueue_job(run_bulk_edit, user_id=user_id, kind="datasets.bulk",
                       title=f"{prepared.description[:150]} in {dataset.name}",
                       params={"dataset_id": dataset.id, "edit": bulk.params()},
                       interactive=prepared.count <= INTERACTIVE_CAPTIONS)


def enqueue_undo(dataset: Dataset, batch: CaptionBatch, *, user_id: int):
    """Queue the undo of `batch` as a ``datasets.undo`` job (raises `QueueUnavailable`)."""
    return enqueue_job(run_undo, user_id=user_id, kind="datasets.undo", title=f"Undo “{batch.description[:150]}”",
                       params={"dataset_id": dataset.id, "batch_id": batch.id},
                       interactive=batch.image_count <= INTERACTIVE_CAPTIONS)


def _dataset_of(run) -> tuple[Dataset, Path]:
    dataset = db.session.get(Dataset, run.job.params["dataset_id"])
    if dataset is None or dataset.user_id != run.job.user_id:
        raise JobFailed("The dataset no longer exists.")
    try:
        return dataset, dataset_root(dataset, owner_roots(dataset))
    except PathRefused as exc:
        raise JobFailed(exc.message) from exc


def _progress(run, total: int, what: str) -> Callable[[int], None]:
    def report(done: int) -> None:
        run.progress(min(99, done * 100 // max(total, 1)), f"{done:,} of {total:,} {what}")
        run.check_canceled()  # between chunks: what is written so far stays one undoable step
    return report


def _finish(run, dataset: Dataset, outcome: EditOutcome, description: str) -> None:
    run.job.result = {"dataset_id": dataset.id, **outcome.to_json()}
    run.job.message = f"{description}: {outcome.summary}"[:2000]


def run_bulk_edit(job_id: str) -> None:
    """The ``datasets.bulk`` job: one dataset-wide caption edit, streamed, as one history step.

    params: ``dataset_id``, ``edit`` (`BulkEdit.params`). result: ``dataset_id``, ``changed``,
    ``batch_id`` (the history step, None when nothing changed), ``conflicts`` / ``errors`` /
    ``uncertain`` (up to 50 names each) with ``*_total`` counts. Fails with the reason when the
    inputs or the pattern cannot be used (nothing written then).
    """
    with job_run(job_id) as run:
        dataset, root = _dataset_of(run)
        try:
            prepared = prepare(dataset, BulkEdit.from_params(run.job.params["edit"]))
        except ValueError as exc:
            raise JobFailed(str(exc)) from exc
        run.progress(1, f"Reading {prepared.count:,} captions")
        try:
            outcome = apply(dataset, prepared, root=root, data_dir=Path(current_app.config["DATA_DIR"]),
                            user_id=run.job.user_id, on_progress=_progress(run, prepared.count, "captions"))
        except ValueError as exc:
            written = getattr(exc, "outcome", None)
            if written is not None and written.changed:
                raise JobFailed(f"{exc} Stopped after changing {written.changed:,} captions; they are one step "
                                "in the history, which can undo them.") from exc
            raise JobFailed(str(exc)) from exc
        _finish(run, dataset, outcome, prepared.description)


def run_undo(job_id: str) -> None:
    """The ``datasets.undo`` job: undo one history step (see `history.undo_batch`), streamed.

    params: ``dataset_id``, ``batch_id``. result: as ``datasets.bulk``'s.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset_of(run)
        batch = db.session.get(CaptionBatch, run.job.params["batch_id"])
        if batch is None or batch.dataset_id != dataset.id:
            raise JobFailed("That history step no longer exists.")
        outcome = undo_batch(dataset, batch, root=root, data_dir=Path(current_app.config["DATA_DIR"]),
                             user_id=run.job.user_id, on_progress=_progress(run, batch.image_count, "captions"))
        _finish(run, dataset, outcome, f"Undid “{batch.description}”")
