"""Tessera: the app factory, and the map of the code.

Shared layers at the bottom, areas as peers above them, no import running back up
(tests/test_architecture.py enforces it):

- core: config, metadata, extensions, models (User, Job), atomic, files, uploads, htmx, errors
- auth: logging in; ``auth.access`` — the ownership helpers every view uses
- replicate: client, schema, presets, the model ``catalog``, ``inputs`` (seed, job title)
- jobs: enqueue_job/job_run and the job contract (``jobs.runner``), predictions, status partial
- gallery: every image a model made (Generation, save_generation)
- webhooks: Replicate's pushed prediction states
- areas: generate, canvas, datasets — each a package with ``bp``; one area uses another only
  through the names in that package's ``__all__``.
"""
import warnings
from pathlib import Path

from flask import Flask, request
from flask_login import current_user
from PIL import Image
from redis import Redis
from rq import Queue
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config
from app.extensions import csrf, db, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent

# Endpoints a visitor may reach without an account; everything else needs a login.
PUBLIC_ENDPOINTS = {"auth.login", "auth.setup", "static", "favicon", "health", "errors.too_large", "webhooks.replicate"}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


# Every module that defines tables, shared layers first. Imported by the factory (and so by every
# web process, worker and Alembic run) whichever area loads first; add a new area's tables here.
TABLE_MODULES = (
    "app.models", "app.replicate.models", "app.gallery.models",
    "app.canvas.models", "app.canvas.tiles", "app.datasets.models", "app.loras.models",
)


def _register_tables() -> None:
    import importlib

    for module in TABLE_MODULES:
        importlib.import_module(module)


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_object(Config())
    if overrides:
        app.config.update(overrides)
    Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    # Pillow refuses images above twice MAX_IMAGE_PIXELS (and only warns above it): half the setting makes
    # every Image.open in this process refuse exactly what TESSERA_MAX_IMAGE_PIXELS allows.
    Image.MAX_IMAGE_PIXELS = app.config["MAX_IMAGE_PIXELS"] / 2
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

    if app.config["PROXY_FIX"]:
        counts = dict(part.split("=") for part in app.config["PROXY_FIX"].split(","))
        app.wsgi_app = ProxyFix(app.wsgi_app, **{k.strip(): int(v) for k, v in counts.items()})

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."

    app.redis = Redis.from_url(app.config["REDIS_URL"])
    app.task_queue = Queue(app.config["QUEUE_NAME"], connection=app.redis)  # long jobs
    app.interactive_queue = Queue(app.config["INTERACTIVE_QUEUE_NAME"], connection=app.redis)

    _register_tables()
    from app import errors
    # Every area's blueprint the same way: its package exports `bp`.
    from app.auth import bp as auth_bp
    from app.canvas import bp as canvas_bp
    from app.datasets import bp as datasets_bp
    from app.generate import bp as generate_bp
    from app.jobs import bp as jobs_bp
    from app.loras import bp as loras_bp
    from app.webhooks import bp as webhooks_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(jobs_bp, url_prefix="/jobs")
    app.register_blueprint(generate_bp)
    app.register_blueprint(canvas_bp, url_prefix="/canvas")
    app.register_blueprint(datasets_bp, url_prefix="/datasets")
    app.register_blueprint(loras_bp, url_prefix="/loras")
    app.register_blueprint(webhooks_bp)
    errors.register(app)

    @app.context_processor
    def navigation():
        def nav_items():
            items = [("generate.index", "Generate"), ("generate.gallery", "Gallery"), ("canvas.index", "Canvas"),
                     ("datasets.index", "Datasets"), ("loras.index_page", "LoRAs"), ("jobs.index", "Jobs")]
            items = [(endpoint, label) for endpoint, label in items if endpoint in app.view_functions]
            # The item the view names (`view.nav_item`: a page shown inside another area, as the Train
            # page is a dataset's page), else the page's own item, else the item it belongs under by
            # name (an image's page, generate.gallery_detail, marks "Gallery"), else the first item
            # of its area (a canvas page marks "Canvas").
            endpoint = request.endpoint or ""
            named = getattr(app.view_functions.get(endpoint), "nav_item", None)
            current = named or next((e for e, _ in items if e == endpoint), None) or next(
                (e for e, _ in items if endpoint.startswith(e + "_")), None) or next(
                (e for e, _ in items if e.split(".")[0] == request.blueprint), None)
            return [(endpoint, label, endpoint == current) for endpoint, label in items]
        return {"nav_items": nav_items}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/favicon.ico")
    def favicon():
        # Browsers and tools ask for it at the root whatever the page names; public, cached a day.
        response = app.send_static_file("favicon.ico")
        response.cache_control.public, response.cache_control.max_age = True, 86400
        return response

    @app.before_request
    def require_login():
        if request.endpoint in PUBLIC_ENDPOINTS or getattr(app.view_functions.get(request.endpoint),
                                                           "checks_own_login", False):
            return None
        if not current_user.is_authenticated:
            return login_manager.unauthorized()

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app
