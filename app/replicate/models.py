"""The model catalog's table: the models a user can pick, with each one's cached input schema."""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class ModelEntry(db.Model):
    """A model in the picker: a shipped preset (user_id NULL) or one a user added, with its cached schema."""

    __table_args__ = (UniqueConstraint("user_id", "ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(200))  # owner/name or owner/name:version
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="text-to-image")  # text-to-image, inpaint, caption
    mask_polarity: Mapped[str | None] = mapped_column(String(32))
    openapi_schema: Mapped[dict | None] = mapped_column(JSON)
    schema_fetched_at: Mapped[datetime | None]
