"""Job functions for tests of the job runner (RQ imports them by name, so they live in a module)."""
from __future__ import annotations

from app.jobs.runner import job_run


def run_deferring(job_id: str) -> None:
    """Counts its runs in job.result["runs"]; defers itself by params["delay"] until params["runs"] runs."""
    with job_run(job_id) as run:
        runs = int((run.job.result or {}).get("runs", 0)) + 1
        run.job.result = {"runs": runs}
        if runs < run.job.params["runs"]:
            run.progress(runs * 10, f"Run {runs}")
            run.defer(run.job.params["delay"])
        run.job.message = f"Done after {runs} runs"


def run_holding(job_id: str) -> None:
    """Holds its worker until the file params["release"] exists (at most 60 s), like a long export."""
    import time
    from pathlib import Path

    with job_run(job_id) as run:
        release = Path(run.job.params["release"])
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        run.job.message = "Released" if release.exists() else "Gave up waiting"


def run_at_once(job_id: str) -> None:
    """Ends at once, like a check of a dataset nothing changed in."""
    with job_run(job_id) as run:
        run.job.message = "Done"
