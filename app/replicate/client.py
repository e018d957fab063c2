"""An HTTP client for the parts of Replicate's API Tessera uses.

Every failure surfaces as a ReplicateError subclass whose ``message`` is a sentence a user can act
on. Reads are retried with backoff; a prediction create is repeated only when the server provably
did not act on it, because every repeated create is a paid prediction.
"""
from __future__ import annotations

import base64
import binascii
import functools
import importlib.metadata
import io
import json
import mimetypes
import os
import random
import re
import ssl
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import quote, unquote_to_bytes, urlsplit

import httpx
from PIL import Image

from app.replicate.trainings import Training

DONE_STATUSES = frozenset({"succeeded", "failed", "canceled"})

AUTH_MESSAGE = (
    "Replicate rejected the API token. Set REPLICATE_API_TOKEN to a valid token "
    "(replicate.com/account/api-tokens)."
)
BILLING_MESSAGE = (
    "Replicate needs billing set up for this account (402): add a payment method or credit at "
    "replicate.com/account/billing."
)

_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_MODEL_REF = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(.*))?")
# tqdm draws " 40%|████      | 10/25 [...]"; the bar after the percentage keeps "50% of VRAM" out.
_TQDM_PERCENT = re.compile(r"(\d{1,3})%\|")
# tqdm's default bar: " 40%|████      | 10/25 [00:02<00:03,  4.1it/s]" (the counter follows the bar).
_TQDM_STEPS = re.compile(r"\d{1,3}%\|[^|\n\r]*\|\s*(\d+)/(\d+)")
_RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_DETAIL_FIELD = re.compile(r"^-\s*(?:input\.)?([\w.-]+):\s*(.+)$", re.MULTILINE)

# Failures that happen before a request reaches the server: repeating even a create is safe.
_UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after which the server may or may not have acted on the request.
_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One per process: loading the CA certificates is the slow part (tens of ms) of making a client,
    and a job makes a client per run. Workers build it before forking, so work-horses inherit it."""
    return httpx.create_ssl_context()


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("tessera")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout that is not installed
        version = "dev"
    return f"tessera/{version}"


URL_SHOWN_CHARS = 200
MESSAGE_MAX_CHARS = 2000
# A URL or data URI inside a message: cut at whitespace or a closing quote/bracket.
_URL_IN_TEXT = re.compile(r"""(?:https?://|data:)[^\s'"<>)\]]+""", re.IGNORECASE)


def shorten_url(url: str, limit: int = URL_SHOWN_CHARS) -> str:
    """A URL cut to about ``limit`` characters for a message; a data URI shows only its type and size."""
    if url[:5].lower() == "data:":
        header = url[:url.find(",")] if "," in url[:200] else url[:40]
        return f"{header},… ({len(url):,} characters)"
    return url if len(url) <= limit else url[:limit] + "…"


def shorten_urls(text: str, limit: int = URL_SHOWN_CHARS) -> str:
    """``text`` with every URL in it cut by shorten_url, and the whole bounded to MESSAGE_MAX_CHARS."""
    text = _URL_IN_TEXT.sub(lambda match: shorten_url(match.group(0), limit), text)
    return text if len(text) <= MESSAGE_MAX_CHARS else text[:MESSAGE_MAX_CHARS] + "…"


class ReplicateError(Exception):
    """A failure talking to Replicate; ``message`` is meant to be shown to the user as is (any URL in
    it is cut to about 200 characters, so a 10 kB data URI never fills a page or a log line)."""

    def __init__(self, message: str, *, status: int | None = None, fields: dict[str, str] | None = None,
                 retry_after: float | None = None) -> None:
        message = shorten_urls(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields = fields or {}
        self.retry_after = retry_after


class AuthenticationError(ReplicateError):
    """401: the token is missing, mistyped or revoked."""


class BillingError(ReplicateError):
    """402: the account has no payment method or has run out of credit."""


class InputError(ReplicateError):
    """422: an input value or the model version was rejected; ``fields`` maps input name -> reason."""


class NotFoundError(ReplicateError):
    """404: unknown (or invisible to this token) model, version or prediction."""


class ForbiddenError(ReplicateError):
    """403: the token may not do this, e.g. write to a model of another account."""


class ThrottledError(ReplicateError):
    """429 that outlasted the retries; ``retry_after`` says when Replicate expects to accept again."""


class TransientError(ReplicateError):
    """Server errors, timeouts and unreachable hosts that outlasted the retries, or hit a create that
    must not be repeated."""


class OutputError(ReplicateError):
    """An output file that cannot or must not be downloaded, or is not what it should be."""


@dataclass
class Prediction:
    id: str
    status: str
    output: Any
    logs: str
    error: str | None
    urls: dict[str, str]
    model: str | None
    version: str | None
    input: dict[str, Any]
    metrics: dict[str, Any]
    data_removed: bool
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Prediction:
        error = data.get("error")
        return cls(
            id=str(data.get("id", "")),
            status=str(data.get("status", "")),
            output=data.get("output"),
            logs=data.get("logs") or "",
            error=None if error is None else str(error),
            urls=data.get("urls") or {},
            model=data.get("model"),
            version=data.get("version"),
            input=data.get("input") or {},
            metrics=data.get("metrics") or {},
            data_removed=bool(data.get("data_removed")),
            raw=data,
        )

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def progress(self) -> int | None:
        return parse_progress(self.logs)

    @property
    def steps(self) -> tuple[int, int] | None:
        return parse_steps(self.logs)

    @property
    def predict_time(self) -> float | None:
        """Seconds of model time Replicate bills for (``metrics.predict_time``), once it is known."""
        value = self.metrics.get("predict_time")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class ModelInfo:
    ref: str
    owner: str
    name: str
    description: str
    version_id: str | None
    openapi_schema: dict[str, Any]

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.openapi_schema.get("components", {}).get("schemas", {}).get("Input", {})


def parse_progress(logs: str | None) -> int | None:
    """The last tqdm percentage in a prediction's logs, or None when no progress bar was printed."""
    if not logs:
        return None
    percentages = _TQDM_PERCENT.findall(logs)  # \r- and \n-separated updates alike
    if not percentages:
        return None
    return min(int(percentages[-1]), 100)


def parse_steps(logs: str | None) -> tuple[int, int] | None:
    """(step, total) of the last tqdm bar in a prediction's logs, e.g. (10, 25) from
    ``" 40%|████      | 10/25 [00:02<00:03,  4.1it/s]"``; None when no bar with a counter was printed.
    A model that prints several bars (a refiner, a second pass) reports the one it is on."""
    if not logs:
        return None
    last = None
    for last in _TQDM_STEPS.finditer(logs):
        pass
    if last is None:
        return None
    step, total = int(last.group(1)), int(last.group(2))
    return (min(step, total), total) if total > 0 else None


_FILE_VALUE = re.compile(r"(?:https?://|data:)", re.IGNORECASE)
MAX_OUTPUT_DEPTH = 8
MAX_OUTPUT_ITEMS = 500
MAX_OUTPUT_TEXT = 1_000_000


@dataclass
class OutputItem:
    """One file in a prediction's output: ``value`` is its URL or data URI, ``key`` where it sat
    ("0", "image", "frames.2"; "" for a lone value)."""
    value: str
    key: str


@dataclass
class ParsedOutput:
    files: list[OutputItem]
    text: str | None  # text the model returned, joined; None when there is none
    dropped: int = 0  # values past MAX_OUTPUT_ITEMS or nested deeper than MAX_OUTPUT_DEPTH


def _is_file_value(value: Any) -> bool:
    return isinstance(value, str) and _FILE_VALUE.match(value) is not None and not any(c.isspace() for c in value[:2048])


def parse_output(output: Any, schema: dict | None = None) -> ParsedOutput:
    """The files and the text in a prediction's output, whatever its shape.

    Real models return (shared/reference/replicate-models-and-trainings.md, "Model outputs"): a list
    of file URLs; one URL string; data: URIs instead of URLs; text as a string or as a list of string
    tokens to be joined (LLMs and captioners stream tokens; Cog marks such outputs
    ``x-cog-array-display: concatenate``); an object whose values hold URLs or text. ``schema`` is
    the model's flattened Output schema when known (see schema.output_schema).
    """
    files: list[OutputItem] = []
    texts: list[str] = []
    dropped = 0

    def walk(value: Any, key: str, depth: int) -> None:
        nonlocal dropped
        if len(files) + len(texts) >= MAX_OUTPUT_ITEMS or depth > MAX_OUTPUT_DEPTH:
            dropped += 1
            return
        if value is None:
            return
        if _is_file_value(value):
            files.append(OutputItem(value, key))
        elif isinstance(value, str):
            texts.append(f"{key}: {value}" if key and not key.isdigit() else value)
        elif isinstance(value, (bool, int, float)):
            texts.append(f"{key}: {json.dumps(value)}" if key else json.dumps(value))
        elif isinstance(value, list):
            if value and all(isinstance(item, str) and not _is_file_value(item) for item in value):
                joiner = "" if _tokens(value, schema) else "\n"
                joined = joiner.join(value)
                texts.append(f"{key}: {joined}" if key and not key.isdigit() else joined)
                return
            for index, item in enumerate(value):
                walk(item, f"{key}.{index}" if key else str(index), depth + 1)
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name), depth + 1)
        else:
            dropped += 1

    walk(output, "", 0)
    text = "\n".join(texts) if texts else None
    if text is not None and len(text) > MAX_OUTPUT_TEXT:
        text = text[:MAX_OUTPUT_TEXT] + "…"
    return ParsedOutput(files, text, dropped)


def _tokens(items: list[str], schema: dict | None) -> bool:
    """Whether a list of strings is one text streamed as tokens (joined with nothing) rather than
    separate texts (one per line)."""
    if schema:
        if schema.get("x-cog-array-display") == "concatenate" or schema.get("x-cog-array-type") == "iterator":
            return True
        if schema.get("x-cog-array-display") is not None:
            return False
    # Tokens carry their own spacing (" the", " cat"); separate texts rarely start with a space.
    return any(item[:1].isspace() or item[-1:].isspace() for item in items) or len(items) > 20


def output_urls(output: Any) -> list[str]:
    """The file URLs and data URIs in a prediction's output, in order (see parse_output)."""
    return [item.value for item in parse_output(output).files]


@dataclass
class OutputFile:
    """An output file's bytes and what they are, sniffed from the bytes themselves.

    ``kind`` is "image" (Pillow reads it; ``image_format`` is its format name), "video", "audio"
    or "file"; ``playable`` says whether browsers play it in a <video>/<audio> element.
    """
    data: bytes
    content_type: str
    kind: str
    extension: str
    image_format: str | None = None

    @property
    def playable(self) -> bool:
        return self.content_type in PLAYABLE_TYPES


PLAYABLE_TYPES = frozenset({"video/mp4", "video/webm", "audio/mpeg", "audio/ogg", "audio/wav", "audio/flac",
                            "audio/mp4", "audio/webm"})
_EXTENSIONS = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-msvideo": ".avi",
    "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/wav": ".wav", "audio/flac": ".flac", "audio/mp4": ".m4a",
    "application/zip": ".zip", "application/pdf": ".pdf", "model/gltf-binary": ".glb", "application/json": ".json",
    "text/plain": ".txt", "application/x-tar": ".tar", "application/gzip": ".gz", "application/octet-stream": ".bin",
}


_BELIEVED_TYPES = frozenset({"text/plain", "application/json", "text/csv", "application/x-tar", "application/gzip",
                             "application/zip", "application/pdf", "model/gltf-binary", "audio/mpeg", "audio/wav",
                             "audio/ogg", "audio/flac", "audio/mp4", "video/mp4", "video/webm", "video/quicktime"})


def _sniff(data: bytes) -> str | None:
    """The content type the first bytes reveal, for the non-image files models return."""
    head = data[:16]
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video/webm"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "application/zip"
    if head.startswith(b"%PDF"):
        return "application/pdf"
    if head.startswith(b"glTF"):
        return "model/gltf-binary"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "application/x-tar"
    return None


def identify_output(data: bytes, declared_type: str | None = None) -> OutputFile:
    """What an output file is, from its bytes first and the declared type (Content-Type or the data
    URI's MIME type, often a generic application/octet-stream) only as a fallback. Raises
    OutputError for an image with more pixels than Pillow's MAX_IMAGE_PIXELS."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except Image.DecompressionBombError:
        raise OutputError(f"The output is not an image Tessera can read: it has more than "
                          f"{Image.MAX_IMAGE_PIXELS:,} pixels, the limit that keeps decompression bombs out.") from None
    except (OSError, SyntaxError, ValueError):
        image_format = None
    if image_format:
        mime = Image.MIME.get(image_format, f"image/{image_format.lower()}")
        return OutputFile(data, mime, "image", "." + image_format.lower().replace("jpeg", "jpg"), image_format)
    content_type = _sniff(data)
    if content_type is None:
        # The declared type is believed only where it cannot make a browser run anything (no HTML,
        # SVG or scripts from a model's output on Tessera's origin).
        declared = (declared_type or "").split(";")[0].strip().lower()
        content_type = declared if declared in _BELIEVED_TYPES else "application/octet-stream"
    kind = content_type.split("/")[0] if content_type.split("/")[0] in ("video", "audio") else "file"
    extension = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
    return OutputFile(data, content_type, kind, extension)


def decode_data_uri(uri: str, max_bytes: int) -> tuple[bytes, str]:
    """(bytes, declared MIME type) of a ``data:`` URI, refused before decoding when it holds more than
    ``max_bytes``. Raises OutputError with a message that names the size, never the URI itself."""
    header, comma, payload = uri.partition(",")
    if not comma or not header[:5].lower() == "data:":
        raise OutputError("The output is a data: URI without data.")
    params = header[5:].split(";")
    mime = params[0].strip() or "text/plain"
    is_base64 = any(p.strip().lower() == "base64" for p in params[1:])
    estimate = len(payload) * 3 // 4 if is_base64 else len(payload)
    if estimate > max_bytes:
        raise OutputError(f"The output is an inline file (data: URI) of about {_format_bytes(estimate)}; Tessera "
                          f"keeps output files up to {_format_bytes(max_bytes)}.")
    if is_base64:
        try:
            data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise OutputError("The output is a data: URI whose base64 data is damaged.") from exc
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise OutputError(f"The output is an inline file larger than {_format_bytes(max_bytes)}.")
    return data, mime


def parse_model_ref(ref: str) -> tuple[str | None, str | None, str | None]:
    """(owner, name, version) of "owner/name", "owner/name:<version id>" or a bare version id."""
    text = (ref or "").strip()
    if _VERSION_ID.fullmatch(text):
        return None, None, text
    match = _MODEL_REF.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Replicate model: write owner/name (e.g. black-forest-labs/flux-schnell), "
            "owner/name:<version id>, or a 64-character version id."
        )
    owner, name, version = match.groups()
    if version is not None and not _VERSION_ID.fullmatch(version):
        raise ValueError(
            f"{text!r} has the version {version!r}, but a Replicate version id is 64 lowercase hexadecimal characters."
        )
    return owner, name, version


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _format_bytes(count: int) -> str:
    if count < 1024 * 1024:
        return f"{_format_number(max(1, round(count / 1024)))} kB"
    return f"{_format_number(round(count / (1024 * 1024), 2))} MB"


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of an error response, or {} when it is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_hint(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait: the Retry-After header, else the "resets in ~30s" detail."""
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(float(header), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(header).timestamp() - time.time(), 0.0)
            except (TypeError, ValueError):
                pass
    match = _RESETS_IN.search(str(_problem(response).get("detail") or ""))
    return float(match.group(1)) if match else None


def _invalid_fields(problem: dict[str, Any]) -> dict[str, str]:
    """Input name (without "input.") -> reason, from invalid_fields or, failing that, the detail lines."""
    fields: dict[str, str] = {}
    for item in problem.get("invalid_fields") or []:
        if isinstance(item, dict) and item.get("field"):
            # "input.lora_scales.1" is item 1 of the input lora_scales: the message belongs to that input.
            path = str(item["field"]).removeprefix("input.")
            name, _, rest = path.partition(".")
            reason = str(item.get("description") or item.get("type") or "invalid")
            if rest.isdigit():
                reason = f"Item {int(rest) + 1}: {reason[:1].lower()}{reason[1:]}"
            if str(item.get("type")) in ("number_any_of", "number_one_of", "number_all_of") and name in fields:
                continue  # the generic "must validate one schema" adds nothing to a specific reason
            fields[name] = reason
    if not fields:
        for name, reason in _DETAIL_FIELD.findall(str(problem.get("detail") or "")):
            fields[name] = reason.strip()
    return fields


def _schema_object(value: Any) -> dict[str, Any]:
    """A model's openapi schema as published, or {} when what came is not even a JSON object (the
    schema walker copes with anything inside one)."""
    return value if isinstance(value, dict) else {}


class ReplicateClient:
    """Talks to one Replicate account. Thread-safe; close() it (or use ``with``) when done."""

    def __init__(self, token: str, base_url: str = "https://api.replicate.com/v1", *, timeout: float = 30.0,
                 max_retries: int = 4, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_download_bytes: int = 64 * 1024 * 1024, download_hosts: set[str] | None = None,
                 allow_http_downloads: bool = False, data_uri_limit: int = 256 * 1024,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_download_bytes = max_download_bytes
        self.download_hosts = {host.lower() for host in download_hosts} if download_hosts else None
        self.allow_http_downloads = allow_http_downloads
        self.data_uri_limit = data_uri_limit
        self._sleep = sleep
        self._models: dict[tuple[str, str, str | None], ModelInfo] = {}
        user_agent = _user_agent()
        tls = shared_tls_context()
        self._api = httpx.Client(
            base_url=self.base_url + "/", timeout=timeout, transport=transport, follow_redirects=False, verify=tls,
            headers={"Authorization": f"Bearer {token}", "User-Agent": user_agent, "Accept": "application/json"},
        )
        # Output hosts get no token; redirects are not followed so the host check cannot be sidestepped.
        self._downloads = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, verify=tls,
                                       headers={"User-Agent": user_agent})

    def close(self) -> None:
        self._api.close()
        self._downloads.close()

    def __enter__(self) -> ReplicateClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Predictions

    def create_prediction(self, model_ref: str, input: dict[str, Any], *, webhook: str | None = None,
                          webhook_events_filter: list[str] | None = None, wait: int | None = None) -> Prediction:
        """Start a prediction and return it as Replicate answered (status usually "starting").

        `model_ref` "owner/name" runs the model's latest version (POST /v1/models/{owner}/{name}/predictions);
        "owner/name:version" runs that version (POST /v1/predictions). `input` maps the model's input
        names to values; files go in as data URIs or file URLs made by `file_input`. `webhook` (a URL)
        with `webhook_events_filter` (of "start", "output", "logs", "completed") makes Replicate push
        each state change; `wait` (1–60 seconds) holds the request until the prediction ends
        (``Prefer: wait``). Source: Replicate's HTTP API (/work/shared/reference/replicate-api.md).

        A create is never repeated once sent (that could pay twice); a 429 or an unsent request is.
        Raises ValueError for a malformed `model_ref` or `wait`; AuthenticationError (401),
        BillingError (402), NotFoundError (404: unknown model or version), InputError (422, with
        ``fields``), ThrottledError (429 after the retries) and TransientError (5xx or network
        trouble; the prediction may or may not exist).
        """
        owner, name, version = parse_model_ref(model_ref)
        body: dict[str, Any] = {"input": input}
        if version is None:
            path = f"models/{owner}/{name}/predictions"
        else:
            path, body["version"] = "predictions", version
        if webhook is not None:
            body["webhook"] = webhook
        if webhook_events_filter is not None:
            body["webhook_events_filter"] = list(webhook_events_filter)
        headers, timeout = {}, None
        if wait is not None:
            if not 1 <= wait <= 60:
                raise ValueError("wait must be between 1 and 60 seconds.")
            headers["Prefer"] = f"wait={wait}"
            # The server holds the request up to `wait` seconds; don't time out before it answers.
            timeout = httpx.Timeout(self.timeout, read=self.timeout + wait)
        response = self._call("POST", path, json=body, headers=headers, timeout=timeout, repeatable=False,
                              not_found=self._model_not_found(owner, name, version))
        return Prediction.from_api(self._json(response))

    def get_prediction(self, prediction_id: str) -> Prediction:
        response = self._call("GET", f"predictions/{quote(prediction_id, safe='')}", repeatable=True,
                              not_found=self._prediction_not_found(prediction_id))
        return Prediction.from_api(self._json(response))

    def cancel_prediction(self, prediction_id: str) -> Prediction:
        # Canceling twice is harmless on the server, so it is retried like a read.
        response = self._call("POST", f"predictions/{quote(prediction_id, safe='')}/cancel", repeatable=True,
                              not_found=self._prediction_not_found(prediction_id))
        return Prediction.from_api(self._json(response))

    def get_webhook_secret(self) -> str:
        """The whsec_… key Replicate signs this account's webhook deliveries with."""
        response = self._call("GET", "webhooks/default/secret", repeatable=True,
                              not_found="Replicate's webhook secret is not available at this address.")
        key = self._json(response).get("key")
        if not key:
            raise ReplicateError("Replicate did not say which secret signs its webhooks.", status=response.status_code)
        return str(key)

    # Models

    def get_model(self, ref: str) -> ModelInfo:
        owner, name, version = parse_model_ref(ref)
        if owner is None or name is None:
            raise ValueError("A bare version id cannot be looked up: write it as owner/name:<version id>.")
        key = (owner, name, version)
        if key in self._models:
            return self._models[key]
        not_found = self._model_not_found(owner, name, version)
        if version is None:
            data = self._json(self._call("GET", f"models/{owner}/{name}", repeatable=True, not_found=not_found))
            latest = data.get("latest_version") if isinstance(data.get("latest_version"), dict) else {}
            # The owner and name as Replicate spells them (its answer, not the ref as typed).
            owner = data["owner"][:100] if isinstance(data.get("owner"), str) and data["owner"] else owner
            name = data["name"][:100] if isinstance(data.get("name"), str) and data["name"] else name
            info = ModelInfo(ref=f"{key[0]}/{key[1]}", owner=owner, name=name,
                             description=str(data.get("description") or "")[:2000],
                             version_id=latest.get("id") if isinstance(latest.get("id"), str) else None,
                             openapi_schema=_schema_object(latest.get("openapi_schema")))
        else:
            data = self._json(self._call("GET", f"models/{owner}/{name}/versions/{version}", repeatable=True,
                                         not_found=not_found))
            info = ModelInfo(ref=f"{owner}/{name}:{version}", owner=owner, name=name, description="",
                             version_id=version, openapi_schema=_schema_object(data.get("openapi_schema")))
        self._models[key] = info
        return info

    # Trainings and the models they write to

    def get_account(self) -> dict[str, Any]:
        """``{type, username, name}`` of the token's account: the owner of models Tessera creates."""
        data = self._json(self._call("GET", "account", repeatable=True,
                                     not_found="Replicate's account API is not available at this address."))
        if not data.get("username"):
            raise ReplicateError("Replicate did not say which account the token belongs to.")
        return data

    def list_hardware(self) -> list[dict[str, Any]]:
        """``[{name, sku}]``: what a model created through the API may run on."""
        response = self._call("GET", "hardware", repeatable=True,
                              not_found="Replicate's hardware list is not available at this address.")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise ReplicateError("Replicate answered the hardware list with something that is not a list.")
        return [item for item in body if isinstance(item, dict) and item.get("sku")]

    def find_model(self, owner: str, name: str) -> dict[str, Any] | None:
        """The model object of owner/name, or None when it does not exist (or the token cannot see it).
        Not cached: a destination may be created between two looks."""
        try:
            response = self._call("GET", f"models/{quote(owner, safe='')}/{quote(name, safe='')}", repeatable=True,
                                  not_found="")
        except NotFoundError:
            return None
        return self._json(response)

    def ensure_model(self, owner: str, name: str, *, visibility: str = "private", hardware: str | None = None,
                     description: str = "") -> tuple[dict[str, Any], bool]:
        """(model, created): owner/name as it is, or created when missing (private by default).

        Creating a model that exists is refused by Replicate, so it is looked up first; a create that
        races another one (409, or 422 "already exists") falls back to the lookup. Raises ForbiddenError
        when the token may not create models under ``owner``, InputError when the name is refused."""
        existing = self.find_model(owner, name)
        if existing is not None:
            return existing, False
        if hardware is None:
            skus = [item["sku"] for item in self.list_hardware()]
            # A LoRA destination is normally run through its trained version, whose hardware the trainer
            # sets; the model's own hardware only needs to exist. CPU is the cheapest choice offered.
            hardware = "cpu" if "cpu" in skus or not skus else skus[0]
        body = {"owner": owner, "name": name, "visibility": visibility, "hardware": hardware,
                "description": description[:1000]}
        try:
            # Creating a model costs nothing, and a repeated create is refused, so it is retried like a read.
            response = self._call(
                "POST", "models", json=body, repeatable=True, creating="model",
                not_found="Replicate's models API is not available at this address.",
                forbidden=(f"Your Replicate token may not create models under {owner!r}. Choose a destination "
                           "under the token's own account, or use a token of that account"))
        except ReplicateError as exc:
            if exc.status == 409 or (exc.status == 422 and "exist" in exc.message.lower()):
                found = self.find_model(owner, name)
                if found is not None:
                    return found, False
            if exc.status == 422:
                raise InputError(f"Replicate refused the model name {owner}/{name}: {exc.message}. Names are "
                                 "lowercase letters, digits, '-', '_' and '.'; choose another.",
                                 status=422, fields=exc.fields) from exc
            raise
        return self._json(response), True

    def create_training(self, trainer_ref: str, destination: str, input: dict[str, Any], *,
                        webhook: str | None = None, webhook_events_filter: list[str] | None = None) -> Training:
        """Start a training of ``trainer_ref`` ("owner/name:<version>"; without a version, the latest)
        writing a new version of ``destination`` ("owner/model", which must exist). Never repeated
        blindly: a training costs dollars, so a create that may have reached Replicate raises
        TransientError instead of trying again."""
        owner, name, version = parse_model_ref(trainer_ref)
        if owner is None or name is None:
            raise ValueError("A trainer is written owner/name or owner/name:<version id>.")
        if version is None:
            version = self.get_model(f"{owner}/{name}").version_id
            if not version:
                raise ReplicateError(f"Replicate lists no version of {owner}/{name} to train with.")
        body: dict[str, Any] = {"destination": destination, "input": input}
        if webhook is not None:
            body["webhook"] = webhook
        if webhook_events_filter is not None:
            body["webhook_events_filter"] = list(webhook_events_filter)
        response = self._call(
            "POST", f"models/{owner}/{name}/versions/{version}/trainings", json=body, repeatable=False,
            creating="training", not_found=self._model_not_found(owner, name, version),
            forbidden=(f"Your Replicate token may not write new versions to {destination}. Choose a destination "
                       "model of the token's own account"))
        return Training.from_api(self._json(response))

    def get_training(self, training_id: str) -> Training:
        response = self._call("GET", f"trainings/{quote(training_id, safe='')}", repeatable=True,
                              not_found=f"Replicate has no training {training_id} (or your token cannot see it).")
        return Training.from_api(self._json(response))

    def cancel_training(self, training_id: str) -> Training:
        # Canceling twice is harmless, so it is retried like a read.
        response = self._call("POST", f"trainings/{quote(training_id, safe='')}/cancel", repeatable=True,
                              not_found=f"Replicate has no training {training_id} (or your token cannot see it).")
        return Training.from_api(self._json(response))

    def list_trainings(self, cursor: str | None = None) -> tuple[list[Training], str | None]:
        """One page of the account's trainings, newest first, and the cursor URL of the next page (or None)."""
        path = cursor if cursor else "trainings"
        if cursor and not cursor.startswith(self.base_url + "/"):
            raise ValueError("A trainings cursor must be a URL Replicate gave for this API.")
        if cursor:
            path = cursor.removeprefix(self.base_url + "/")
        data = self._json(self._call("GET", path, repeatable=True,
                                     not_found="Replicate's trainings list is not available at this address."))
        results = [Training.from_api(item) for item in data.get("results") or [] if isinstance(item, dict)]
        return results, data.get("next") or None

    # Files as inputs

    def upload_path(self, path: str | os.PathLike, filename: str, content_type: str) -> dict[str, Any]:
        """Upload a file from disk through the files API, streamed in 64 KiB pieces (never read whole
        into memory); returns the file object ``{id, urls{get}, size, checksums, expires_at}``."""
        with open(path, "rb") as handle:
            # A repeated upload only leaves an unused file that expires, so it is retried like a read;
            # httpx rewinds the file for each try.
            response = self._call("POST", "files", files={"content": (filename, handle, content_type)},
                                  repeatable=True, timeout=httpx.Timeout(self.timeout, write=max(self.timeout, 300.0)),
                                  not_found="Replicate's files API is not available at this address.")
        data = self._json(response)
        if not (data.get("urls") or {}).get("get"):
            raise ReplicateError("Replicate accepted the upload but did not say where the file is.",
                                 status=response.status_code)
        return data

    # Files as inputs

    def upload_file(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload through the files API; returns the URL to pass as an input value."""
        # A repeated upload only leaves an unused file that expires, so uploads are retried like reads.
        response = self._call("POST", "files", files={"content": (filename, data, content_type)}, repeatable=True,
                              not_found="Replicate's files API is not available at this address.")
        url = (self._json(response).get("urls") or {}).get("get")
        if not url:
            raise ReplicateError("Replicate accepted the upload but did not say where the file is.",
                                 status=response.status_code)
        return url

    def file_input(self, data: bytes, content_type: str, filename: str = "input.png") -> str:
        """An input value for a file: an inline data URI when small, else an uploaded file's URL."""
        if len(data) <= self.data_uri_limit:
            return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
        return self.upload_file(data, filename, content_type)

    # Outputs

    def download(self, url: str) -> bytes:
        """The bytes of an output file, from an allowed host, at most max_download_bytes of them."""
        return self._download(url).content

    def fetch_output(self, value: str) -> OutputFile:
        """An output file — a URL on an allowed host or a data: URI — fetched (bounded by
        max_download_bytes) and identified from its bytes. Raises OutputError and friends."""
        if value[:5].lower() == "data:":
            data, declared = decode_data_uri(value, self.max_download_bytes)
        else:
            response = self._download(value)
            data, declared = response.content, response.headers.get("content-type")
        return identify_output(data, declared)

    def _download(self, url: str) -> httpx.Response:
        self._check_download_url(url)
        response = self._with_retries(lambda: self._download_once(url), repeatable=True)
        if response.is_success:
            return response
        raise self._download_error(url, response)

    def _download_error(self, url: str, response: httpx.Response) -> ReplicateError:
        """What the user reads when a download of `url` ended with `response` (not 2xx, after the
        retries `_with_retries` makes): one table for `download` and `download_to_file`."""
        status = response.status_code
        if 300 <= status < 400:
            return OutputError(f"The file at {url} redirects elsewhere ({status}); Tessera does not follow "
                               "redirects for downloads.", status=status)
        if status in (404, 410):
            # Source: Replicate deletes a prediction's output files about an hour after it ends
            # (shared/reference/replicate-models-and-trainings.md).
            return OutputError(f"The file at {url} is gone ({status}). Replicate deletes output files about "
                               "an hour after the prediction ends.", status=status)
        if status == 429:
            return ThrottledError(f"The file host is throttling downloads of {url}; try again shortly.",
                                  status=status, retry_after=_retry_hint(response))
        if status >= 500:
            return TransientError(f"The file host failed ({status}) while sending {url}, even after "
                                  f"{self.max_retries + 1} tries; try again shortly.", status=status)
        return OutputError(f"Downloading {url} failed ({status}).", status=status)

    def download_to_file(self, url: str, dest: str | os.PathLike, *, max_bytes: int) -> int:
        """Stream an output file to ``dest`` (written whole or not at all: a temporary name, then renamed),
        at most ``max_bytes`` of it; returns its size. For outputs too big to hold in memory, such as
        LoRA weights. Errors as for download() (the same `_download_error` table)."""
        self._check_download_url(url)
        dest = os.fspath(dest)
        tmp = f"{dest}.{os.getpid()}.part"

        def once() -> httpx.Response:
            with self._downloads.stream("GET", url) as streamed:
                if not streamed.is_success:
                    streamed.read()
                    return httpx.Response(streamed.status_code, headers=streamed.headers, request=streamed.request)
                total = 0
                with open(tmp, "wb") as out:
                    for chunk in streamed.iter_bytes(1024 * 1024):
                        total += len(chunk)
                        if total > max_bytes:
                            raise OutputError(f"The file at {url} is larger than {_format_bytes(max_bytes)}; "
                                              "Tessera does not download files that big.", status=streamed.status_code)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                return httpx.Response(streamed.status_code, headers={"x-size": str(total)}, request=streamed.request)

        try:
            response = self._with_retries(once, repeatable=True)
            if not response.is_success:
                raise self._download_error(url, response)
            os.replace(tmp, dest)
            return int(response.headers["x-size"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def download_image(self, url: str) -> tuple[bytes, str]:
        """An output image's bytes and its Pillow format name (e.g. "PNG"), checked to really be an image.
        ``url`` may also be a data: URI (the MIME type it declares is not trusted)."""
        output = self.fetch_output(url)
        if output.kind != "image":
            raise OutputError(f"The output at {url} is not an image Tessera can read ({output.content_type}).")
        return output.data, output.image_format

    def _check_download_url(self, url: str) -> None:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in ("https", "http") or not host:
            raise OutputError(f"Refusing to download {shorten_url(url)!r}: only https URLs are downloaded.")
        if scheme == "http" and not self.allow_http_downloads:
            raise OutputError(f"Refusing to download {url}: it is not https, and plain http downloads are off.")
        if self.download_hosts is not None and host not in self.download_hosts:
            raise OutputError(f"Refusing to download {url}: {host} is not one of the allowed download hosts "
                              f"({', '.join(sorted(self.download_hosts))}).")

    def _download_once(self, url: str) -> httpx.Response:
        """One GET, reading at most max_download_bytes; the body is read fully so it can be retried."""
        with self._downloads.stream("GET", url) as streamed:
            chunks, total = [], 0
            for chunk in streamed.iter_bytes():
                total += len(chunk)
                if total > self.max_download_bytes:
                    raise OutputError(f"The output at {url} is larger than {_format_bytes(self.max_download_bytes)}; "
                                      "Tessera does not download files that big.", status=streamed.status_code)
                chunks.append(chunk)
            return httpx.Response(streamed.status_code, headers=streamed.headers, content=b"".join(chunks),
                                  request=streamed.request)

    # Transport

    def _call(self, method: str, path: str, *, repeatable: bool, not_found: str, json: Any = None,
              files: Any = None, headers: dict[str, str] | None = None,
              timeout: httpx.Timeout | None = None, creating: str = "prediction",
              forbidden: str | None = None) -> httpx.Response:
        """One API request, retried as far as it is safe; returns a 2xx response or raises.

        ``creating`` names what a non-repeatable request creates ("prediction", "training"), for the
        message saying it may exist anyway; ``forbidden`` is the sentence for a 403."""
        def send() -> httpx.Response:
            extra = {"timeout": timeout} if timeout is not None else {}
            return self._api.request(method, path, json=json, files=files, headers=headers, **extra)

        response = self._with_retries(send, repeatable=repeatable, creating=creating)
        if response.is_success:
            return response
        raise self._error(response, not_found=not_found, repeatable=repeatable, creating=creating,
                          forbidden=forbidden)

    def _with_retries(self, send: Callable[[], httpx.Response], *, repeatable: bool,
                      creating: str = "prediction") -> httpx.Response:
        """The first response not worth retrying. 429s and unsent requests are always retried; 5xx and
        timeouts only when ``repeatable``, because a create the server may have acted on must not be repeated."""
        attempt = 0
        while True:
            last_try = attempt >= self.max_retries
            try:
                response = send()
            except _UNSENT_ERRORS as exc:
                if last_try:
                    raise TransientError(f"Could not connect to {self._host_of(exc)} ({type(exc).__name__}) "
                                         f"after {attempt + 1} tries; check the network and try again.") from exc
                delay = self._backoff_delay(attempt)
            except _TRANSPORT_ERRORS as exc:
                if not repeatable:
                    raise TransientError(
                        f"The connection to Replicate failed ({type(exc).__name__}) while creating the {creating}. "
                        f"It may have been created anyway: check replicate.com/{creating}s before trying again."
                    ) from exc
                if last_try:
                    raise TransientError(f"{self._host_of(exc)} did not answer ({type(exc).__name__}) after "
                                         f"{attempt + 1} tries; try again shortly.") from exc
                delay = self._backoff_delay(attempt)
            else:
                status = response.status_code
                if last_try or not (status == 429 or (status >= 500 and repeatable)):
                    return response
                hint = _retry_hint(response)
                delay = min(hint, self.max_backoff) if hint is not None else self._backoff_delay(attempt)
            self._sleep(delay)
            attempt += 1

    def _backoff_delay(self, attempt: int) -> float:
        # Exponential, with jitter so that many workers throttled at once do not come back in step.
        return min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)

    @staticmethod
    def _host_of(exc: httpx.HTTPError) -> str:
        try:
            return exc.request.url.host or "the server"
        except RuntimeError:  # the exception was raised without a request attached
            return "the server"

    def _error(self, response: httpx.Response, *, not_found: str, repeatable: bool, creating: str = "prediction",
               forbidden: str | None = None) -> ReplicateError:
        status = response.status_code
        problem = _problem(response)
        detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase or "").strip()
        if status == 401:
            return AuthenticationError(AUTH_MESSAGE, status=status)
        if status == 402:
            return BillingError(BILLING_MESSAGE, status=status)
        if status == 403:
            return ForbiddenError(f"{forbidden} ({detail})" if forbidden else
                                  f"Replicate refused the request (403): {detail}", status=status)
        if status == 404:
            return NotFoundError(not_found, status=status)
        if status == 422:
            fields = _invalid_fields(problem)
            if fields:
                reasons = "; ".join(f"{name}: {reason}" for name, reason in fields.items())
                return InputError(f"Replicate rejected {reasons}", status=status, fields=fields)
            title = str(problem.get("title") or "")
            subject = "the model version" if "version" in title.lower() else "the request"
            return InputError(f"Replicate rejected {subject}: {detail}", status=status)
        if status == 429:
            hint = _retry_hint(response)
            when = f"in about {_format_number(round(hint))} seconds" if hint is not None else "in a minute"
            return ThrottledError(
                f"Replicate is throttling requests from this account (429); try again {when}. Accounts without "
                "a payment method have much lower rate limits.", status=status, retry_after=hint)
        if status >= 500:
            if not repeatable:
                return TransientError(
                    f"Replicate had a server error ({status}) while creating the {creating}. It may have been "
                    f"created anyway: check replicate.com/{creating}s before trying again.", status=status)
            return TransientError(f"Replicate had a server error ({status}) and still failed after "
                                  f"{self.max_retries + 1} tries; try again shortly.", status=status)
        return ReplicateError(f"Replicate refused the request ({status}): {detail}", status=status)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            # NaN and ±Infinity are not JSON (RFC 8259) though Python's reader takes them; they become
            # null, or a hostile schema's default would be refused later by PostgreSQL's json type.
            body = response.json(parse_constant=lambda constant: None)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ReplicateError(f"Replicate answered with something that is not a JSON object "
                                 f"(HTTP {response.status_code}).", status=response.status_code)
        return body

    @staticmethod
    def _model_not_found(owner: str | None, name: str | None, version: str | None) -> str:
        if owner is None:
            return f"Replicate has no model version {version} (or your token cannot see it)."
        if version is None:
            return f"Replicate has no model {owner}/{name} (or your token cannot see it)."
        return f"Replicate has no version {version} of {owner}/{name} (or your token cannot see it)."

    @staticmethod
    def _prediction_not_found(prediction_id: str) -> str:
        return f"Replicate has no prediction {prediction_id} (or your token cannot see it)."
