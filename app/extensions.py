"""Extension objects, created unbound and initialised in the app factory."""
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.metadata import metadata

db = SQLAlchemy(metadata=metadata)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """The web server and the workers share one SQLite file: WAL lets readers run beside a writer,
    and busy_timeout makes a writer wait its turn instead of failing with 'database is locked'.
    synchronous=NORMAL is WAL's recommended pairing: still consistent after any crash, and only a
    power cut can lose the last commits, while a commit stops costing an fsync (~30 ms here)."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
