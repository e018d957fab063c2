"""The one SQLAlchemy MetaData every table registers on.

Plain modules (the tile store, the dataset index) define Core tables on it without importing
Flask; Flask-SQLAlchemy's ``db`` is built on the same object, so Alembic sees every table.
"""
from sqlalchemy import MetaData

# Named constraints keep Alembic migrations portable between SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
