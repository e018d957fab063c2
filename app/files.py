"""Serving files from the data folder: by the app itself, or by nginx via X-Accel-Redirect."""
from pathlib import Path
from urllib.parse import quote

from flask import Response, abort, current_app, send_file


def data_path(relpath: str | Path) -> Path:
    """Absolute path of a file inside DATA_DIR; anything that resolves outside is a 404."""
    root = Path(current_app.config["DATA_DIR"]).resolve()
    path = (root / relpath).resolve()
    if not path.is_relative_to(root):
        abort(404)
    return path


def header_safe_name(name: str) -> str:
    """A file name fit for a Content-Disposition header: control characters (a newline is legal in
    a POSIX file name, never in a header) become "_"."""
    return "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in name)


def send_data_file(relpath: str | Path, *, mimetype: str | None = None, download_name: str | None = None,
                   immutable: bool = False, max_age: int = 0) -> Response:
    """Answer with the file at `relpath` (relative to DATA_DIR) after the view has checked access.

    Behind nginx (ACCEL_REDIRECT_PREFIX set) the response is empty and carries
    ``X-Accel-Redirect: <prefix>/<relpath>``, so nginx streams the file; otherwise Flask sends it with
    conditional and range requests. `mimetype` defaults to a guess from the name (application/
    octet-stream behind nginx); `download_name` makes it an attachment of that name (UTF-8,
    RFC 6266); `immutable` lets the browser keep it for a year (only for URLs whose content never
    changes); `max_age` is the cache lifetime in seconds when the app sends the file (0: revalidate).

    :raise 404: when `relpath` resolves outside DATA_DIR or is not a file.
    """
    path = data_path(relpath)
    if not path.is_file():
        abort(404)
    prefix = current_app.config["ACCEL_REDIRECT_PREFIX"]
    if prefix:
        # nginx streams the file from an `internal` location; the app only checked access.
        response = Response(mimetype=mimetype or "application/octet-stream")
        root = Path(current_app.config["DATA_DIR"]).resolve()
        response.headers["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(path.relative_to(root).as_posix())
        if download_name:
            response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(download_name)}"
    else:
        response = send_file(path, mimetype=mimetype, as_attachment=bool(download_name),
                             download_name=header_safe_name(download_name or path.name), conditional=True,
                             max_age=max_age)
    if immutable:
        response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
