"""Redirect targets that come from a user (`next`, a form's "back to" field): only paths on this site.

A browser does not read a Location header the way `urllib.parse` does. Per the WHATWG URL standard
(https://url.spec.whatwg.org/#concept-basic-url-parser) it first strips leading and trailing C0 control
characters and spaces, then removes every tab and newline anywhere, and for http(s) URLs reads "\\" as
"/". So "/\\t/evil.example" becomes "//evil.example" (another host), as do "/\\evil.example" and
"\\\\evil.example"; "https:evil.example" from an http page is "https://evil.example/". Rather than
re-implement the parser, a target is accepted only in a form that every parser reads the same way:
a path starting with exactly one "/", no scheme, no host, no backslash, no control character.
"""
from __future__ import annotations

from urllib.parse import urlsplit

# Longer than any address Tessera builds; a longer "next" is not one of ours.
MAX_TARGET_LENGTH = 2048


def local_target(target: object) -> str | None:
    """`target` unchanged if it is a same-site path (with optional query and fragment), else None.

    Accepts "/datasets/3?tags=a%20b#top"; refuses "", "//evil", "/\\evil", "/\\t/evil", "https:evil",
    "http://host/", "javascript:…", " /x" (leading space), anything with a control character (C0, DEL,
    C1) and anything over MAX_TARGET_LENGTH characters.
    """
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET_LENGTH:
        return None
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return target


def safe_redirect_target(target: object, fallback: str) -> str:
    """`target` when `local_target` accepts it, else `fallback` (a URL the app built itself)."""
    return local_target(target) or fallback
