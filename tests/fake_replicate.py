"""A fake Replicate: a real HTTP server on 127.0.0.1 that speaks the parts of the API Tessera uses.

Predictions move starting -> processing (tqdm lines in the logs) -> a final state, one step per
poll; outputs are PNGs served by the same server. Image colours come from ``fill_colour(seed, index)``,
and an inpainting prediction (``image`` + ``mask``) returns the input image, at its size, with the
mask's white area (pixels >= 128) filled with that colour, so tests can check pixels after pasting a
result back. Outputs are PNG whatever output_format asks for.

Use it as the ``fake_replicate`` pytest fixture, as a context manager, or from another process:
``python -m tests.fake_replicate --port 8765`` prints its base URL and serves until killed.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import math
import random
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from PIL import Image

from app.replicate.presets import PRESETS

TOKEN = "r8_test_token"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"tessera-fake-replicate-webhooks!").decode()  # signs its webhooks
DONE = ("succeeded", "failed", "canceled")
MAX_SIDE = 2048
DEFAULT_SIDE = 512
# Named colours for fake captions, so a tagging test can tell images apart by their caption.
CAPTION_COLOURS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "red": (220, 30, 30),
    "green": (30, 160, 60), "blue": (30, 60, 220), "yellow": (235, 220, 40), "orange": (240, 140, 30),
    "purple": (130, 50, 170), "pink": (240, 150, 190), "brown": (120, 80, 40), "cyan": (40, 200, 220),
}
PROBLEMS = {
    401: {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401},
    402: {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model. Go to "
          "https://replicate.com/account/billing#billing to purchase credit.", "status": 402},
    404: {"title": "Not found", "detail": "Not found.", "status": 404},
    422: {"title": "Invalid version or not permitted", "detail": "The specified version does not exist (or perhaps "
          "you don't have permission to use it?)", "status": 422},
    429: {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429},
    500: {"title": "Internal Server Error", "detail": "Something went wrong on our end.", "status": 500},
    502: {"title": "Bad Gateway", "detail": "Bad gateway.", "status": 502},
    503: {"title": "Service Unavailable", "detail": "The service is temporarily unavailable.", "status": 503},
}


def fill_colour(seed: int, index: int) -> tuple[int, int, int]:
    """The solid colour of output ``index`` of a prediction run with ``seed``."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]  # names in lower case
    json: Any  # the parsed body when it was JSON, else None
    at: float  # time.monotonic() when the request arrived


@dataclass
class _Failure:
    status: int
    remaining: int
    body: Any
    retry_after: float | None
    path_prefix: str | None


@dataclass
class _Model:
    owner: str
    name: str
    description: str
    versions: dict[str, dict]  # version id -> openapi schema
    latest: str


@dataclass
class _Run:
    """What the fake knows about a prediction beyond its public object."""
    schema: dict
    outcome: str
    error: str
    output_mode: str
    seed: int
    steps: int
    output: Any = None  # a fixed output set by the test, instead of running the fake model
    model_input: dict | None = None  # as sent, secrets included (the prediction shows them redacted)
    polls: int = 0


class ModelRunError(Exception):
    """What a real model would raise: the prediction fails with this message."""


class FakeReplicate:
    """A fake Replicate API on a random 127.0.0.1 port. Knobs may be set from any thread."""

    def __init__(self, *, port: int = 0, register_presets: bool = True) -> None:
        self.token = TOKEN
        self.port = port
        self.register_presets = register_presets
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget all requests, predictions, files and injected failures; knobs back to their defaults.
        Lets one server (started once per test session) serve test after test."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.predictions: dict[str, dict] = {}
            self.polls_per_state = 1
            self.next_outcome = "succeeded"  # used by the next prediction created, then back to "succeeded"
            self.next_error = "CUDA out of memory"  # the error of a prediction that fails
            # "list" | "single" | "text" | "tokens" | "data-uri" (a list of WebP data URIs typed
            # application/octet-stream, as some models return); None: as the model's schema says
            self.output_mode: str | None = None
            # Returned as the output of the next prediction, whatever its inputs, then back to None:
            # any JSON (an object of URLs and text, a video URL from publish(), a 100 MB data URI…).
            self.next_output: Any = None
            self._models: dict[str, _Model] = {}
            self._runs: dict[str, _Run] = {}
            self._files: dict[str, dict] = {}  # files API: id -> metadata plus "data"
            self._outputs: dict[str, tuple[bytes, str]] = {}  # /files/out/<name> -> (bytes, content type)
            self._failures: list[_Failure] = []
            if self.register_presets:
                for preset in PRESETS:
                    owner_name, _, version = preset.ref.partition(":")
                    self.add_model(owner_name, preset.openapi_schema, version or None,
                                   description=preset.description)

    # Lifecycle

    def start(self) -> FakeReplicate:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-replicate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeReplicate:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # Set-up by tests

    def add_model(self, owner_name: str, openapi_schema: dict, version_id: str | None = None, *,
                  description: str = "") -> str:
        """Register a model version (the newest becomes latest_version); returns the version id."""
        owner, name = owner_name.split("/")
        version_id = version_id or hashlib.sha256(
            json.dumps([owner_name, openapi_schema], sort_keys=True).encode()).hexdigest()
        with self._lock:
            model = self._models.setdefault(owner_name, _Model(owner, name, description, {}, version_id))
            model.versions[version_id] = openapi_schema
            model.latest = version_id
            model.description = description or model.description
        return version_id

    def fail_next(self, status: int, times: int = 1, body: Any = None, retry_after: float | None = None,
                  path_prefix: str | None = None) -> None:
        """Answer the next ``times`` requests (whose path starts with ``path_prefix``, when given) with
        ``status`` and a problem+json body like Replicate's (or ``body``)."""
        with self._lock:
            self._failures.append(_Failure(status, times, body, retry_after, path_prefix))

    def publish(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at an output URL (no token needed, like replicate.delivery); returns the URL."""
        with self._lock:
            self._outputs[name] = (data, content_type)
        return f"{self.origin}/files/out/{name}"

    def file_bytes(self, file_id: str) -> bytes:
        """The bytes uploaded through the files API under ``file_id``."""
        with self._lock:
            return self._files[file_id]["data"]

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # Request handling (called from server threads)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.path_prefix is None or path.startswith(failure.path_prefix):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _model_with_version(self, version_id: str) -> _Model | None:
        with self._lock:
            return next((model for model in self._models.values() if version_id in model.versions), None)

    def _create(self, model: _Model, version_id: str, body: dict, wait: bool) -> tuple[int, dict]:
        schema = model.versions[version_id]
        model_input = body.get("input")
        if not isinstance(model_input, dict):
            return 422, {"title": "Input validation failed", "detail": "- input: Invalid type. Expected: object\n",
                         "status": 422, "invalid_fields": [{"type": "invalid_type", "field": "input",
                                                            "description": "Invalid type. Expected: object"}]}
        invalid = _invalid_fields(schema, model_input)
        if invalid:
            detail = "".join(f"- {item['field']}: {item['description']}\n" for item in invalid)
            return 422, {"title": "Input validation failed", "detail": detail, "status": 422,
                         "invalid_fields": invalid}
        with self._lock:
            prediction_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=26))
            seed = model_input["seed"] if isinstance(model_input.get("seed"), int) else random.randrange(2 ** 16)
            output_mode = self.output_mode or _output_mode_of(schema)
            steps = model_input.get("num_inference_steps") or model_input.get("steps") or 28
            self._runs[prediction_id] = _Run(schema, self.next_outcome, self.next_error, output_mode, seed,
                                             int(steps), self.next_output, model_input)
            self.next_outcome, self.next_output = "succeeded", None
            prediction = {
                "id": prediction_id, "model": f"{model.owner}/{model.name}", "version": version_id,
                "input": _redacted(schema, model_input), "logs": "", "output": None, "error": None, "status": "starting",
                "data_removed": False, "created_at": _now(), "started_at": None, "completed_at": None,
                "urls": {"get": f"{self.base_url}/predictions/{prediction_id}",
                         "cancel": f"{self.base_url}/predictions/{prediction_id}/cancel",
                         "web": f"https://replicate.com/p/{prediction_id}"},
                "metrics": {},
            }
            for key in ("webhook", "webhook_events_filter"):
                if key in body:
                    prediction[key] = body[key]
            self.predictions[prediction_id] = prediction
            if wait:  # Prefer: wait; the fake model is quick enough to finish within any wait
                self._finish(prediction_id)
            return 201, dict(prediction)

    def _poll(self, prediction_id: str) -> dict | None:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return None
            run = self._runs[prediction_id]
            if prediction["status"] not in DONE:
                run.polls += 1
                steps = self.polls_per_state
                if run.polls <= steps:
                    prediction["status"] = "starting"
                elif run.polls <= 2 * steps:
                    prediction["status"] = "processing"
                    prediction["started_at"] = prediction["started_at"] or _now()
                    prediction["logs"] = _logs(run, (run.polls - steps) / (steps + 1))
                else:
                    self._finish(prediction_id)
            return dict(prediction)

    def _cancel(self, prediction_id: str) -> dict | None:
        with self._lock:
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return None
            if prediction["status"] not in DONE:
                prediction.update(status="canceled", completed_at=_now())
            return dict(prediction)

    def _finish(self, prediction_id: str) -> None:
        prediction, run = self.predictions[prediction_id], self._runs[prediction_id]
        prediction["started_at"] = prediction["started_at"] or _now()
        prediction["completed_at"] = _now()
        prediction["metrics"] = {"predict_time": 0.1, "total_time": 0.2}
        if run.outcome == "canceled":
            prediction["status"] = "canceled"
            return
        try:
            if run.outcome == "failed":
                raise ModelRunError(run.error)
            output = self._run_model(prediction_id, run.model_input or {}, run)
        except ModelRunError as exc:
            prediction.update(status="failed", error=str(exc),
                              logs=_logs(run, 0.5) + f"\nTraceback (most recent call last):\n{exc}\n")
            return
        prediction.update(status="succeeded", output=output, logs=_logs(run, 1.0))

    def _run_model(self, prediction_id: str, model_input: dict, run: _Run) -> Any:
        if run.output is not None:
            return run.output
        # Like a real model, every input file is fetched; an unreadable one fails the prediction.
        references = [self._input_image(model_input, name) for name in ("input_image", "image_input", "input_images")]
        references = [image for group in references for image in (group if isinstance(group, list) else [group])
                      if image is not None]
        image = self._input_image(model_input, "image") or (references[0] if references else None)
        if run.output_mode == "text":
            return _caption(image)
        if run.output_mode == "tokens":
            return [word if index == 0 else " " + word for index, word in enumerate(_caption(image).split())]
        mask = self._input_image(model_input, "mask")
        count = 1 if run.output_mode == "single" else int(model_input.get("num_outputs") or 1)
        urls = []
        for index in range(count):
            colour = fill_colour(run.seed, index)
            if image is not None and mask is not None:
                if mask.size != image.size:
                    raise ModelRunError(f"The mask ({mask.width}x{mask.height}) must be the same size as the image "
                                        f"({image.width}x{image.height}).")
                result = image.convert("RGB")
                repaint = mask.convert("L").point(lambda value: 255 if value >= 128 else 0)
                result.paste(colour, (0, 0, *result.size), repaint)
            else:
                size = image.size if image is not None else _output_size(model_input)
                result = Image.new("RGB", size, colour)
            if run.output_mode == "data-uri":
                buffer = io.BytesIO()
                result.save(buffer, "WEBP")
                urls.append("data:application/octet-stream;base64," + base64.b64encode(buffer.getvalue()).decode())
            else:
                urls.append(self.publish(f"{prediction_id}-{index}.png", png_bytes(result), "image/png"))
        return urls[0] if run.output_mode == "single" else urls

    def _input_image(self, model_input: dict, name: str) -> Image.Image | list[Image.Image] | None:
        value = model_input.get(name)
        if isinstance(value, list):
            return [self._open_input(str(item), f"{name}.{index}") for index, item in enumerate(value)]
        if not value:
            return None
        return self._open_input(str(value), name)

    def _open_input(self, value: str, name: str) -> Image.Image:
        data = self._input_file_bytes(value)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (OSError, ValueError) as exc:
            raise ModelRunError(f"cannot identify image file for input {name}") from exc
        return image

    def _input_file_bytes(self, value: str) -> bytes:
        """An input file's bytes: a data URI, or a URL of this fake (files API or an output)."""
        if value.startswith("data:"):
            _header, _, payload = value.partition(",")
            try:
                return base64.b64decode(payload, validate=True)
            except binascii.Error as exc:
                raise ModelRunError("invalid data URI") from exc
        parts = urlsplit(value)
        if parts.port == self.port and parts.hostname == "127.0.0.1":
            match = re.fullmatch(r"/v1/files/([\w-]+)(?:/download)?", parts.path)
            if match and match.group(1) in self._files:
                return self._files[match.group(1)]["data"]
            output = self._outputs.get(parts.path.removeprefix("/files/out/"))
            if output is not None:
                return output[0]
        raise ModelRunError(f"Failed to download {value}: the fake Replicate only reads its own files")

    def _upload(self, content_type_header: str, body: bytes) -> tuple[int, dict]:
        part = _multipart_part(content_type_header, body, "content")
        if part is None:
            return 400, {"title": "Bad request", "detail": "Missing multipart part named content", "status": 400}
        filename, content_type, data = part
        file_id = secrets.token_hex(12)
        created = datetime.now(timezone.utc)
        meta = {
            "id": file_id, "name": filename, "content_type": content_type,
            "size": len(data), "etag": hashlib.md5(data).hexdigest(),
            "checksums": {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()},
            "metadata": {}, "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": (created + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            "urls": {"get": f"{self.base_url}/files/{file_id}"},
        }
        with self._lock:
            self._files[file_id] = {**meta, "data": data}
        return 201, meta


def _multipart_part(content_type: str, body: bytes, name: str) -> tuple[str, str, bytes] | None:
    """(filename, content type, bytes) of the multipart/form-data part called ``name``."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or boundary is None:
        return None
    for part in body.split(b"--" + boundary.group(1).encode()):
        head, separator, data = part.partition(b"\r\n\r\n")
        headers = head.decode("latin-1")
        if separator and re.search(rf'Content-Disposition:[^\r\n]*\bname="{re.escape(name)}"', headers, re.I):
            filename = re.search(r'filename="([^"]*)"', headers)
            part_type = re.search(r"Content-Type:\s*([^\r\n]+)", headers, re.I)
            return (filename.group(1) if filename else "file",
                    part_type.group(1).strip() if part_type else "application/octet-stream",
                    data.removesuffix(b"\r\n"))
    return None


def _create_body_problem(body: Any, extra_keys: set[str]) -> tuple[int, dict] | None:
    """The error answer for a malformed create body; Replicate rejects unknown top-level keys."""
    if not isinstance(body, dict):
        return 400, {"title": "Bad request", "detail": "The body must be a JSON object", "status": 400}
    unknown = sorted(set(body) - {"input", "webhook", "webhook_events_filter", "stream"} - extra_keys)
    if unknown:
        return 422, {"title": "Invalid request", "detail": f"Additional property {unknown[0]} is not allowed",
                     "status": 422}
    return None


def _output_mode_of(schema: dict) -> str:
    output = schema.get("components", {}).get("schemas", {}).get("Output", {})
    if output.get("type") == "array":
        return "list"
    return "single" if output.get("format") == "uri" else "text"


def _output_size(model_input: dict) -> tuple[int, int]:
    def side(name: str) -> int | None:
        value = model_input.get(name)
        return max(1, min(int(value), MAX_SIDE)) if isinstance(value, (int, float)) else None

    width, height = side("width"), side("height")
    if width or height:
        return width or DEFAULT_SIDE, height or DEFAULT_SIDE
    ratio = re.fullmatch(r"(\d+):(\d+)", str(model_input.get("aspect_ratio", "")))
    if ratio:  # the model's proportions at a small, fast size
        scale = math.sqrt(int(ratio.group(1)) / int(ratio.group(2)))
        return round(DEFAULT_SIDE * scale / 16) * 16, round(DEFAULT_SIDE / scale / 16) * 16
    return DEFAULT_SIDE, DEFAULT_SIDE


def _caption(image: Image.Image | None) -> str:
    if image is None:
        return "Caption: a picture"
    red, green, blue = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    name = min(CAPTION_COLOURS, key=lambda colour: sum(
        (a - b) ** 2 for a, b in zip(CAPTION_COLOURS[colour], (red, green, blue))))
    return f"Caption: a {name} square"


def _logs(run: _Run, fraction: float) -> str:
    """tqdm lines up to ``fraction`` of the steps, as a diffusion model prints them."""
    total = max(run.steps, 1)
    lines = [f"Using seed: {run.seed}"]
    done = int(total * fraction)
    for step in sorted({total * quarter // 4 for quarter in range(5) if total * quarter // 4 < done} | {done}):
        percent = step * 100 // total
        bar = "█" * (percent // 10) + " " * (10 - percent // 10)
        lines.append(f"{percent:3d}%|{bar}| {step}/{total} [00:0{step // 10}<00:0{(total - step) // 10}, 9.8it/s]")
    return "\n".join(lines) + "\n"


_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool), "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict), "null": lambda v: v is None,
}
_JSON_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}


def _deref(document: dict, node: dict, seen: tuple = ()) -> dict:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    if ref in seen:
        raise ValueError(f"$ref cycle at {ref}")
    target = document
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return _deref(document, target, (*seen, ref))


def _schema_errors(document: dict, node: Any, value: Any, field: str, depth: int = 0) -> list[dict]:
    """What Replicate's validator says about ``value`` under ``node``: gojsonschema-style invalid_fields
    entries (type, field, description), [] when it is valid. Cog's shapes: $ref, allOf, anyOf/oneOf,
    type lists, nullable, enum, minimum/maximum (and exclusive ones), items/minItems/maxItems, format uri."""
    if not isinstance(node, dict) or depth > 40:
        return []
    node = _deref(document, node)
    errors: list[dict] = []
    for part in node.get("allOf") or []:
        errors += _schema_errors(document, part, value, field, depth + 1)
    for keyword, kind in (("anyOf", "number_any_of"), ("oneOf", "number_one_of")):
        branches = node.get(keyword)
        if branches:
            results = [_schema_errors(document, branch, value, field, depth + 1) for branch in branches]
            passing = sum(1 for result in results if not result)
            if passing == 0 or (keyword == "oneOf" and passing > 1):
                errors.append({"type": kind, "field": field,
                               "description": f"Must validate {'at least' if keyword == 'anyOf' else 'one and only'} "
                                              f"one schema ({keyword})"})
                # The closest branch's reasons follow, as gojsonschema reports them.
                closest = min((r for r in results if r), key=len, default=[])
                errors += closest
    if value is None and node.get("nullable") is True:
        return errors
    kind = node.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_TYPE_CHECKS.get(name, lambda v: False)(value) for name in names):
            given = _JSON_NAMES.get(type(value), type(value).__name__)
            return errors + [{"type": "invalid_type", "field": field,
                              "description": f"Invalid type. Expected: {', '.join(names)}, given: {given}"}]
    if "enum" in node and value not in node["enum"]:
        allowed = ", ".join(json.dumps(choice) for choice in node["enum"])
        errors.append({"type": "enum", "field": field, "description": f"{field} must be one of the following: {allowed}"})
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = node.get("minimum"), node.get("maximum")
        if isinstance(low, (int, float)) and (value <= low if node.get("exclusiveMinimum") is True else value < low):
            errors.append({"type": "number_gte", "field": field,
                           "description": f"Must be greater than or equal to {_number_text(low)}"})
        if isinstance(high, (int, float)) and (value >= high if node.get("exclusiveMaximum") is True else value > high):
            errors.append({"type": "number_lte", "field": field,
                           "description": f"Must be less than or equal to {_number_text(high)}"})
    if isinstance(value, list):
        if isinstance(node.get("maxItems"), int) and len(value) > node["maxItems"]:
            errors.append({"type": "array_max_items", "field": field,
                           "description": f"Array must have at most {node['maxItems']} items"})
        if isinstance(node.get("minItems"), int) and len(value) < node["minItems"]:
            errors.append({"type": "array_min_items", "field": field,
                           "description": f"Array must have at least {node['minItems']} items"})
        for index, item in enumerate(value):
            errors += _schema_errors(document, node.get("items"), item, f"{field}.{index}", depth + 1)
    if isinstance(value, str) and node.get("format") == "uri" and not re.match(r"(?:https?://\S+|data:[^,]*,)", value):
        errors.append({"type": "format", "field": field, "description": "Does not match format 'uri'"})
    return errors


def _redacted(schema: dict, model_input: dict) -> dict:
    """The input as Replicate stores and returns it: secret inputs (x-cog-secret, format password)
    redacted. The run itself still sees the real values."""
    properties = schema.get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {})
    secret = {name for name, prop in properties.items() if isinstance(prop, dict)
              and (prop.get("x-cog-secret") or prop.get("format") == "password")}
    return {name: ("**********" if name in secret else value) for name, value in model_input.items()}


def _invalid_fields(schema: dict, model_input: dict) -> list[dict]:
    """Replicate's invalid_fields for an input, checked like Cog checks it."""
    schemas = schema.get("components", {}).get("schemas", {})
    input_schema = schemas.get("Input", {})
    properties = input_schema.get("properties", {})
    invalid = [{"type": "required", "field": f"input.{name}", "description": f"{name} is required"}
               for name in input_schema.get("required", []) if name not in model_input]
    for name, value in model_input.items():
        if name not in properties:
            continue  # Replicate ignores inputs a model does not have
        invalid += _schema_errors(schema, properties[name], value, f"input.{name}")
    return invalid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeReplicate/1.0"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; don't wait 40 ms between

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    @property
    def fake(self) -> FakeReplicate:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        # Read the whole body first: on a kept-alive connection leftovers would corrupt the next request.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            parsed = json.loads(body) if body and "json" in (self.headers.get("Content-Type") or "") else None
        except ValueError:
            parsed = None
        self.fake._record(RecordedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                          parsed, time.monotonic()))
        path = urlsplit(self.path).path
        failure = self.fake._take_failure(path)
        if failure is not None:
            problem = failure.body if failure.body is not None else PROBLEMS.get(
                failure.status, {"title": "Error", "detail": "Injected failure.", "status": failure.status})
            headers = {"Retry-After": _number_text(failure.retry_after)} if failure.retry_after is not None else {}
            self._send_json(failure.status, problem, headers)
            return
        if path.startswith("/files/out/"):
            self._serve_output(method, path.removeprefix("/files/out/"))
            return
        if not path.startswith("/v1/"):
            self._send_json(404, PROBLEMS[404])
            return
        authorization = self.headers.get("Authorization") or ""
        if authorization not in (f"Bearer {self.fake.token}", f"Token {self.fake.token}"):
            self._send_json(401, PROBLEMS[401])
            return
        self._route(method, path.removeprefix("/v1"), body, parsed)

    def _route(self, method: str, path: str, body: bytes, parsed: Any) -> None:
        fake = self.fake
        wait = "wait" in (self.headers.get("Prefer") or "")
        if method == "POST" and path == "/predictions":
            answer = _create_body_problem(parsed, {"version"})
            if answer is None:
                model = fake._model_with_version(str(parsed.get("version", "")))
                answer = (422, PROBLEMS[422]) if model is None else fake._create(model, parsed["version"], parsed, wait)
            self._send_json(*answer)
            return
        match = re.fullmatch(r"/models/([\w.-]+)/([\w.-]+)(/predictions|/versions/([\w-]+))?", path)
        if match:
            with fake._lock:
                model = fake._models.get(f"{match.group(1)}/{match.group(2)}")
            if model is None:
                self._send_json(404, PROBLEMS[404])
            elif match.group(3) == "/predictions" and method == "POST":
                answer = _create_body_problem(parsed, set())
                self._send_json(*(answer or fake._create(model, model.latest, parsed, wait)))
            elif match.group(4) and method == "GET":
                schema = model.versions.get(match.group(4))
                if schema is None:
                    self._send_json(404, PROBLEMS[404])
                else:
                    self._send_json(200, {"id": match.group(4), "created_at": _now(), "cog_version": "0.9.0",
                                          "openapi_schema": schema})
            elif match.group(3) is None and method == "GET":
                self._send_json(200, {
                    "url": f"https://replicate.com/{model.owner}/{model.name}", "owner": model.owner,
                    "name": model.name, "description": model.description, "visibility": "public",
                    "latest_version": {"id": model.latest, "created_at": _now(), "cog_version": "0.9.0",
                                       "openapi_schema": model.versions[model.latest]},
                })
            else:
                self._send_json(405, {"detail": "Method not allowed.", "status": 405})
            return
        match = re.fullmatch(r"/predictions/([\w-]+)(/cancel)?", path)
        if match and (method, bool(match.group(2))) in (("GET", False), ("POST", True)):
            prediction = fake._cancel(match.group(1)) if match.group(2) else fake._poll(match.group(1))
            self._send_json(*((200, prediction) if prediction is not None else (404, PROBLEMS[404])))
            return
        if method == "GET" and path == "/webhooks/default/secret":
            self._send_json(200, {"key": WEBHOOK_SECRET})
            return
        if method == "POST" and path == "/files":
            self._send_json(*fake._upload(self.headers.get("Content-Type") or "", body))
            return
        match = re.fullmatch(r"/files/([\w-]+)(/download)?", path)
        if match and method == "GET":
            with fake._lock:
                stored = fake._files.get(match.group(1))
            if stored is None:
                self._send_json(404, PROBLEMS[404])
            elif match.group(2):
                self._send_bytes(200, stored["data"], stored["content_type"])
            else:  # like Replicate, urls.get describes the file; /download has its bytes
                self._send_json(200, {k: v for k, v in stored.items() if k != "data"})
            return
        self._send_json(404, PROBLEMS[404])

    def _serve_output(self, method: str, name: str) -> None:
        with self.fake._lock:
            output = self.fake._outputs.get(name)
        if method != "GET" or output is None:
            self._send_bytes(404, b"Not found", "text/plain")
        else:
            self._send_bytes(200, *output)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        content_type = "application/problem+json" if status >= 400 else "application/json"
        self._send_bytes(status, json.dumps(payload).encode(), content_type, headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_replicate() -> Iterator[FakeReplicate]:
    with FakeReplicate() as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Replicate API on 127.0.0.1 until killed.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    parser.add_argument("--polls-per-state", type=int, default=1,
                        help="polls a prediction spends starting, then processing")
    args = parser.parse_args()
    fake = FakeReplicate(port=args.port)
    fake.polls_per_state = args.polls_per_state
    with fake:
        print(fake.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
