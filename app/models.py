"""Tables shared by every area: accounts and background jobs."""
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db, login_manager


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def login_id(user_id: int, generation: int) -> str:
    """What a session and a "keep me logged in" cookie name: the account and its session generation."""
    return f"{user_id}:{generation}"


def parse_login_id(value) -> tuple[int, int] | None:
    """(account id, session generation) from `login_id`'s form; anything else (including the bare ids
    of sessions made before generations existed) is None, i.e. not logged in."""
    user_id, _, generation = str(value).partition(":")
    if user_id.isdigit() and generation.isdigit():
        return int(user_id), int(generation)
    return None


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Server-side revocation: every session and remember cookie names the generation it was made in,
    # and only the current one is accepted. Logout, a password change and "log out everywhere" move it
    # on (app.auth.accounts.end_all_sessions), so copies of old cookies stop working at once.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    def get_id(self) -> str:
        return login_id(self.id, self.session_generation or 0)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class SessionUser(UserMixin):
    """The logged-in account as a request sees it. Loaded on every request (status polls included),
    so it is one column query rather than an ORM entity load, about 4x cheaper."""

    __slots__ = ("id", "username", "session_generation")

    def __init__(self, id: int, username: str, session_generation: int):
        self.id, self.username, self.session_generation = id, username, session_generation

    def get_id(self) -> str:
        return login_id(self.id, self.session_generation)


@login_manager.user_loader
def load_user(value: str) -> SessionUser | None:
    """The account a session or remember cookie names, only while its session generation is current."""
    login = parse_login_id(value)
    if login is None:
        return None
    table = User.__table__
    row = db.session.connection().execute(
        db.select(table.c.id, table.c.username, table.c.session_generation)
        .where(table.c.id == login[0], table.c.session_generation == login[1])).first()
    return SessionUser(row.id, row.username, row.session_generation) if row else None


class Job(db.Model):
    """One background job; the primary key is the RQ job id, so a retry re-enqueues the same id."""

    QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
    ENDED = (SUCCEEDED, FAILED, CANCELED)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # generate, canvas, caption, export, …
    task: Mapped[str] = mapped_column(String(200))  # dotted path of the job function, for Retry
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    progress: Mapped[int] = mapped_column(default=0)  # 0–100
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    # Which RQ queue carries it (app.jobs.runner.QUEUES): "interactive" or "long" (rows of old: long).
    queue: Mapped[str] = mapped_column(String(16), default="long", server_default="long")
    # Links to what the job produced, e.g. {"generations": [ids]} or {"download": "exports/x.zip"}.
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    # Stored the moment Replicate answers, so a retry polls the same prediction instead of paying twice.
    prediction_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # When it was last queued (created, or retried): the queue wait runs from here to started_at.
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Touched by the worker while it works; a stale heartbeat reveals a worker that died.
    heartbeat_at: Mapped[datetime | None]
    # Seconds of model time Replicate billed for the job's predictions (their metrics.predict_time).
    predict_time: Mapped[float | None]

    @property
    def ended(self) -> bool:
        return self.status in self.ENDED

    @classmethod
    def snapshot(cls, job_id: str, login: tuple[int, int]):
        """The row as a read-only tuple, only if `login` (account id, session generation) is an existing
        account's current session and the account owns the job: one query that both authorises the
        status poll and reads what its partial shows."""
        table, users = cls.__table__, User.__table__
        user_id, generation = login
        return db.session.connection().execute(
            db.select(table).join(users, users.c.id == table.c.user_id)
            .where(table.c.id == job_id, users.c.id == user_id, users.c.session_generation == generation)).first()
