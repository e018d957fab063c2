"""The two RQ queues a job can be on, and which workers take from which.

Interactive jobs (``enqueue_job(..., interactive=True)``) are short, bounded work a page waits on:
datasets.check, caption edits and undos of up to `INTERACTIVE_CAPTIONS` captions, auto-captioning
of up to `INTERACTIVE_IMAGES` images, generate.image and canvas.generate (one prediction whose
progress the page shows). Long jobs are the rest: scans, thumbnails, zip imports, exports, bucket
crops, emptying the trash, LoRA trainings and samples, big edits.

RQ's worker polls its queues in the order given and always takes from the first that has a job
(``Queue.dequeue_any`` over the worker's queue list; https://python-rq.org/docs/workers/), so a
worker serving both takes every interactive job before the next long one, and a worker serving only
the interactive queue never holds a long one. The long queue keeps the one queue name Tessera had
before (``TESSERA_QUEUE``): jobs queued before an upgrade still run.
"""
from __future__ import annotations

INTERACTIVE, LONG = "interactive", "long"
QUEUES = (INTERACTIVE, LONG)  # priority order: a worker serving both takes interactive jobs first

# What still counts as interactive: a caption edit or undo of this many captions (edits of up to
# DATASET_BULK_INLINE_LIMIT, 1,000, run in the request; these take seconds), auto-captioning of this
# many images (as many predictions).
INTERACTIVE_CAPTIONS = 5000
INTERACTIVE_IMAGES = 4


def queue_named(app, queue: str):
    """The RQ ``Queue`` of `app` for a name in QUEUES (anything else, e.g. None: the long queue)."""
    return app.interactive_queue if queue == INTERACTIVE else app.task_queue


def worker_queues(app, names=QUEUES) -> list:
    """The RQ queues a worker serving `names` listens to, in priority order (interactive first) whatever
    order `names` came in. Raises ValueError for an unknown name or none."""
    unknown = set(names) - set(QUEUES)
    if unknown or not names:
        raise ValueError(f"Queues are {', '.join(QUEUES)}; not {', '.join(sorted(unknown)) or 'none'}.")
    return [queue_named(app, name) for name in QUEUES if name in names]
