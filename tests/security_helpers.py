"""Helpers for the security tests: what a refused request must leave as it was, and a user's objects."""
from __future__ import annotations

import re
from pathlib import Path

from app.extensions import db
from app.gallery import Generation
from app.generate.tasks import run_generation
from app.jobs.runner import enqueue_job
from app.models import User


def snapshot(data_dir: Path) -> tuple[dict, list]:
    """Every row of every table and every file in the data folder: what a refused request must leave as it was."""
    db.session.expire_all()
    rows = {table.name: sorted(repr(tuple(row)) for row in db.session.execute(table.select()))
            for table in db.metadata.sorted_tables}
    files = sorted((path.relative_to(data_dir).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
                   for path in Path(data_dir).rglob("*")
                   if path.is_file() and not path.name.startswith("tessera.db"))  # SQLite's own files
    return rows, files


def token_of(client, url: str = "/") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def owned_objects(user: User, data_dir: Path) -> dict[str, object]:
    """A queued job and a generation with its file: something for every route to change or delete."""
    job = enqueue_job(run_generation, user_id=user.id, kind="generate.image", title="a fox",
                      params={"model": "black-forest-labs/flux-schnell", "input": {"prompt": "a fox"}})
    path = Path(data_dir) / "outputs" / "kept.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG kept")
    generation = Generation(user_id=user.id, job_id=job.id, model_ref="black-forest-labs/flux-schnell",
                            prompt="a fox", path="outputs/kept.png", width=1, height=1, seed=1)
    db.session.add(generation)
    db.session.commit()
    return {"job_id": job.id, "generation_id": generation.id}
