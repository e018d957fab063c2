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
