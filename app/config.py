"""Settings, all from the environment, so scaling out changes settings and not code."""
import os
import secrets
from pathlib import Path


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "tessera"


def data_dir_from_env() -> Path:
    return Path(os.environ.get("TESSERA_DATA_DIR") or _default_data_dir()).expanduser().resolve()


def redis_url_from_env(data_dir: Path) -> str:
    """REDIS_URL, else the Unix socket of the private Redis `tessera up` starts in the data folder."""
    return os.environ.get("REDIS_URL") or f"unix://{data_dir / 'run' / 'redis.sock'}"


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY, else one generated once and kept in the data folder so sessions survive restarts."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        # link, not rename: two processes starting at once must agree on one key
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class Config:
    """Read once per app; tests pass overrides to create_app()."""

    def __init__(self) -> None:
        data_dir = data_dir_from_env()
        self.DATA_DIR = data_dir
        self.SECRET_KEY = _secret_key(data_dir)
        self.SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'tessera.db'}"
        if self.SQLALCHEMY_DATABASE_URI.startswith("postgres://"):
            self.SQLALCHEMY_DATABASE_URI = "postgresql+psycopg://" + self.SQLALCHEMY_DATABASE_URI[len("postgres://"):]
        elif self.SQLALCHEMY_DATABASE_URI.startswith("postgresql://"):
            self.SQLALCHEMY_DATABASE_URI = "postgresql+psycopg://" + self.SQLALCHEMY_DATABASE_URI[len("postgresql://"):]
        self.REDIS_URL = redis_url_from_env(data_dir)
        # Long jobs keep the queue name of old (jobs queued before an upgrade still run from it); the
        # quick jobs a user waits for in the page have a queue of their own (app.jobs.runner).
        self.QUEUE_NAME = os.environ.get("TESSERA_QUEUE", "tessera")
        self.INTERACTIVE_QUEUE_NAME = f"{self.QUEUE_NAME}-interactive"
        self.REPLICATE_API_TOKEN = os.environ.get("REPLICATE_API_TOKEN", "")
        self.REPLICATE_API_BASE = os.environ.get("REPLICATE_API_BASE", "https://api.replicate.com/v1")
        # Output files are fetched only from these hosts, over HTTPS (see app.replicate.client).
        self.REPLICATE_DOWNLOAD_HOSTS = _env_list("TESSERA_DOWNLOAD_HOSTS") or [
            "replicate.delivery", "pbxt.replicate.delivery", "api.replicate.com",
        ]
        self.REPLICATE_ALLOW_HTTP_DOWNLOADS = os.environ.get("TESSERA_ALLOW_HTTP_DOWNLOADS") == "1"
        # The largest output file kept (a data: URI or a download); it is held in a worker's memory.
        self.MAX_OUTPUT_BYTES = int(os.environ.get("TESSERA_MAX_OUTPUT_MB", "64")) * 1024 * 1024
        # Dataset-wide caption edits touching more captions than this run as a job (app.datasets.bulkedit).
        self.DATASET_BULK_INLINE_LIMIT = int(os.environ.get("TESSERA_BULK_INLINE_LIMIT", "1000"))
        self.TAG_LISTS = _env_list("TESSERA_TAG_LISTS")  # a1111 tagcomplete / WD14 CSVs for tag autocomplete
        # Kept as configured (absolute, symlinks not resolved), so a path typed through a symlinked
        # root is accepted as well as its real form; `{user}` stands for each account's own folder
        # (see app.datasets.paths.roots_for_user). Roots without it are shared by every account.
        self.DATASET_ROOTS = [Path(os.path.abspath(Path(p).expanduser())) for p in _env_list("TESSERA_DATASET_ROOTS")] or [
            data_dir / "datasets" / "{user}"
        ]
        # What each account may fill with unpacked dataset zips (0: no quota).
        self.USER_QUOTA_BYTES = int(os.environ.get("TESSERA_USER_QUOTA_MB", "20480")) * 1024 * 1024
        # Whole-request cap (zip uploads are the largest); per-image limits are checked where images enter.
        self.MAX_CONTENT_LENGTH = int(os.environ.get("TESSERA_MAX_UPLOAD_MB", "2048")) * 1024 * 1024
        self.MAX_IMAGE_UPLOAD_BYTES = int(os.environ.get("TESSERA_MAX_IMAGE_MB", "50")) * 1024 * 1024
        # Set when nginx serves files: a prefix of an `internal` location that maps to DATA_DIR.
        self.ACCEL_REDIRECT_PREFIX = os.environ.get("TESSERA_ACCEL_REDIRECT_PREFIX", "")
        self.PROXY_FIX = os.environ.get("TESSERA_PROXY_FIX", "")  # e.g. "x_for=1,x_proto=1,x_host=1"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = os.environ.get("TESSERA_SECURE_COOKIES") == "1"
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.REMEMBER_COOKIE_SAMESITE = self.SESSION_COOKIE_SAMESITE  # "Keep me logged in" is as guarded
        self.WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
        # A server database can drop idle connections; a local SQLite file cannot, so skip the ping.
        self.SQLALCHEMY_ENGINE_OPTIONS = {} if self.SQLALCHEMY_DATABASE_URI.startswith("sqlite") else {
            "pool_pre_ping": True}
        # Images with more pixels than this are refused wherever they are opened (Pillow's bomb limit).
        self.MAX_IMAGE_PIXELS = int(os.environ.get("TESSERA_MAX_IMAGE_PIXELS", "100000000"))
        # Failed logins allowed per window, counted per client address and per username (see app.auth.ratelimit).
        self.LOGIN_FAILURES_PER_ADDRESS = int(os.environ.get("TESSERA_LOGIN_FAILURES_PER_ADDRESS", "10"))
        self.LOGIN_FAILURES_PER_USERNAME = int(os.environ.get("TESSERA_LOGIN_FAILURES_PER_USERNAME", "20"))
        self.LOGIN_WINDOW_SECONDS = int(os.environ.get("TESSERA_LOGIN_WINDOW_SECONDS", "900"))
        # The address users and Replicate reach Tessera at, e.g. https://tessera.example.com; when set,
        # Replicate reports progress through webhooks and workers poll only as a fallback.
        self.PUBLIC_URL = os.environ.get("TESSERA_PUBLIC_URL", "").rstrip("/")
        # A LoRA training job looks at its Replicate training this often, holding no worker in between
        # (a training runs tens of minutes); with webhooks a delivery wakes it, so it looks less often.
        self.LORA_POLL_SECONDS = float(os.environ.get("TESSERA_LORA_POLL_SECONDS", "20"))
        self.LORA_WEBHOOK_POLL_SECONDS = float(os.environ.get("TESSERA_LORA_WEBHOOK_POLL_SECONDS", "120"))
        # whsec_… from Replicate; when unset it is fetched once from Replicate and cached in Redis.
        self.REPLICATE_WEBHOOK_SECRET = os.environ.get("REPLICATE_WEBHOOK_SECRET", "")
