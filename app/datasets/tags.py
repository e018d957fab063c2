"""Tag-level views of a caption and the dataset-wide edits made on them.

A caption is either a comma-separated tag list (SD/SDXL anime datasets) or natural language
(FLUX). Every edit here is a pure function `caption -> caption` that returns the very same string
when it changes nothing, so a dataset-wide edit only writes the files it really alters.

Edits work line by line: kohya trains on the first line, and with its wildcard option every line
is an alternative caption, so each line is edited as its own tag list and the others are kept.
"""
import re
from collections.abc import Callable, Iterable, Mapping

from app.datasets import saferegex
from app.datasets.captions import MAX_CAPTION_BYTES

TRIGGER_PLACEHOLDER = "[trigger]"

_UNESCAPED_PAREN = re.compile(r"(?<!\\)([()])")
_ESCAPED_PAREN = re.compile(r"\\([()])")
_SENTENCE_END = re.compile(r"[^\W_][.!?](\s|$)")


def split_tags(caption: str) -> list[str]:
    """All tags of a caption, every line included, stripped, empties dropped."""
    return [tag for line in caption.split("\n") for tag in _line_tags(line)]


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def _line_tags(line: str) -> list[str]:
    return [tag for tag in (part.strip() for part in line.split(",")) if tag]


def _edit_lines(caption: str, edit: Callable[[list[str]], list[str]]) -> str:
    """Apply `edit` to the tag list of every non-empty line (or to the empty caption itself)."""
    lines = caption.split("\n")
    targets = [i for i, line in enumerate(lines) if line.strip()] or [0]
    changed = False
    for i in targets:
        tags = _line_tags(lines[i])
        new_tags = edit(tags)
        if new_tags != tags:
            lines[i] = join_tags(new_tags)
            changed = True
    return "\n".join(lines) if changed else caption


def is_tag_caption(text: str) -> bool:
    """Guess whether `text` is a tag list (True) or natural language (False).

    Tags are short comma-separated phrases; sentences have long clauses or end with a full stop
    after a word ("..." or "!?" alone are real booru tags, so punctuation alone does not count).
    """
    first = next((line for line in text.split("\n") if line.strip()), "")
    segments = _line_tags(first)
    if not segments:
        return True
    words = sum(len(segment.split()) for segment in segments)
    if _SENTENCE_END.search(first) and words >= 4:
        return False
    return words / len(segments) <= 3


def tag_underscores_to_spaces(tag: str) -> str:
    """`long_hair` -> `long hair`, `star_(symbol)` -> `star (symbol)`; kaomoji keep their `_`.

    kohya's WD14 script keeps `_` in tags of three characters or fewer (`^_^`, `>_<`). Longer
    kaomoji (`(o)_(o)`, `<o>_<o>`, `||_||`) pass that test, so an underscore also stays when
    neither neighbour is a letter or digit: in words it joins letters (`long_hair`) or a word
    and a bracket (`photo_(medium)`), in kaomoji it sits between symbols.
    """
    if len(tag) <= 3 or "_" not in tag:
        return tag
    out = []
    for i, ch in enumerate(tag):
        if ch == "_":
            left = tag[i - 1] if i > 0 else ""
            right = tag[i + 1] if i + 1 < len(tag) else ""
            if left.isalnum() or right.isalnum():
                ch = " "
        out.append(ch)
    return "".join(out)


def underscores_to_spaces(caption: str) -> str:
    """Every tag through `tag_underscores_to_spaces`."""
    return _edit_lines(caption, lambda tags: [tag_underscores_to_spaces(t) for t in tags])


def spaces_to_underscores(caption: str) -> str:
    """`long hair` -> `long_hair` (booru style); inner runs of spaces become one underscore."""
    return _edit_lines(caption, lambda tags: ["_".join(t.split()) for t in tags])


def escape_parens(caption: str) -> str:
    """`star (symbol)` -> `star \\(symbol\\)`, so A1111-style UIs do not read it as weighting."""
    return _edit_lines(caption, lambda tags: [_UNESCAPED_PAREN.sub(r"\\\1", t) for t in tags])


def unescape_parens(caption: str) -> str:
    """`star \\(symbol\\)` -> `star (symbol)`, for trainers that take captions literally."""
    return _edit_lines(caption, lambda tags: [_ESCAPED_PAREN.sub(r"\1", t) for t in tags])


def _dedupe_tags(tags: list[str], case_insensitive: bool) -> list[str]:
    seen: set[str] = set()
    out = []
    for tag in tags:
        key = tag.casefold() if case_insensitive else tag
        if key not in seen:
            seen.add(key)
            out.append(tag)
    return out


def dedupe(caption: str, *, case_insensitive: bool = False) -> str:
    """Drop repeated tags, keeping the first occurrence and the order."""
    return _edit_lines(caption, lambda tags: _dedupe_tags(tags, case_insensitive))


def trim(caption: str) -> str:
    """Normalise spacing: `a ,b,,  c  d` -> `a, b, c d`; drops empty tags and blank lines before
    the first and after the last line of text (kohya trains on the first line, so a leading
    blank line would leave it nothing)."""
    lines = caption.split("\n")
    new_lines = [join_tags(" ".join(tag.split()) for tag in _line_tags(line)) for line in lines]
    while len(new_lines) > 1 and not new_lines[-1]:
        new_lines.pop()
    while len(new_lines) > 1 and not new_lines[0]:
        new_lines.pop(0)
    new = "\n".join(new_lines)
    return caption if new == caption else new


def _starts_with_word(text: str, word: str) -> bool:
    if not text.casefold().startswith(word.casefold()):
        return False
    rest = text[len(word):]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


def _trigger_line(line: str, trigger: str) -> str:
    had_placeholder = TRIGGER_PLACEHOLDER in line
    line = line.replace(TRIGGER_PLACEHOLDER, trigger)
    if not line.strip():
        return trigger
    if is_tag_caption(line):
        tags = _line_tags(line)
        if not tags:
            return trigger
        others = [t for t in tags if t.casefold() != trigger.casefold()]
        if _starts_with_word(tags[0], trigger) and tags[0].casefold() != trigger.casefold():
            # "mychar woman" already leads with the trigger; keep_tokens keeps it in place.
            new_tags = others
        else:
            new_tags = [trigger, *others]
        return line if new_tags == tags else join_tags(new_tags)
    # Natural language: a placeholder marks where the user wanted the trigger (ai-toolkit keeps
    # it there); otherwise the trigger is prepended unless the sentence already starts with it.
    if had_placeholder or _starts_with_word(line.lstrip(), trigger):
        return line
    return f"{trigger}, {line.lstrip()}"


def apply_trigger(caption: str, trigger: str) -> str:
    """Put the trigger word first in every line of a caption.

    `[trigger]` placeholders (ai-toolkit) are replaced. In tag captions the trigger tag is moved
    to (or inserted at) index 0 and duplicates of it dropped; a first tag that starts with the
    trigger ("mychar woman") counts. Natural-language lines get "trigger, " prepended unless they
    start with it or placed it with a placeholder. An empty caption becomes the trigger.
    """
    trigger = trigger.strip()
    if not trigger:
        return caption
    lines = caption.split("\n")
    while len(lines) > 1 and not lines[0].strip():
        lines.pop(0)  # kohya reads the first line: the trigger must be on the first line of text
    targets = [i for i, line in enumerate(lines) if line.strip()] or [0]
    for i in targets:
        lines[i] = _trigger_line(lines[i], trigger)
    new = "\n".join(lines)
    return caption if new == caption else new


def _segments_edit(caption: str, edit: Callable[[list[str]], list[str] | None]) -> str:
    """Apply `edit` to the raw comma segments of every non-empty line (or the empty caption).

    `edit` gets the segments with their spacing and returns new ones, or None for no change;
    segments it leaves alone keep their exact text, so an edit touches only what it names.
    """
    lines = caption.split("\n")
    targets = [i for i, line in enumerate(lines) if line.strip()] or [0]
    changed = False
    for i in targets:
        new = edit(lines[i].split(","))
        if new is not None:
            lines[i] = ",".join(new)
            changed = True
    return "\n".join(lines) if changed else caption


def _respace(segment: str, text: str) -> str:
    """`text` in place of the tag in `segment`, keeping the spacing around it."""
    stripped = segment.strip()
    start = segment.index(stripped) if stripped else len(segment)
    return segment[:start] + text + segment[start + len(stripped):]


def rename_tag(caption: str, old: str, new: str) -> str:
    """Rename every occurrence of tag `old` to `new`; every other tag stays exactly as it was.

    If `new` is already there, both stay (use `dedupe` to merge); an empty `new` removes the tag.
    """
    old, new = old.strip(), new.strip()
    if not new:
        return remove_tag(caption, old)

    def edit(segments: list[str]) -> list[str] | None:
        if not any(seg.strip() == old for seg in segments):
            return None
        return [_respace(seg, new) if seg.strip() == old else seg for seg in segments]

    return _segments_edit(caption, edit)


def remove_tag(caption: str, tag: str) -> str:
    """Remove every occurrence of `tag` (with its comma); nothing else changes."""
    tag = tag.strip()

    def edit(segments: list[str]) -> list[str] | None:
        kept = [seg for seg in segments if seg.strip() != tag]
        if len(kept) == len(segments):
            return None
        if kept and kept[0] != segments[0]:
            kept[0] = kept[0].lstrip()  # the first tag was removed: no leading ", "
        return kept

    return _segments_edit(caption, edit)


def add_tags(caption: str, tags: Iterable[str], position: str = "end") -> str:
    """Add tags that are not present yet, at the "end" or the "front" (in the given order).

    Existing tags, duplicates and spacing included, are left exactly as they are. "front" puts
    the new tags before the trigger too; call `apply_trigger` afterwards to restore it.
    """
    if position not in ("end", "front"):
        raise ValueError(f"position must be 'end' or 'front', not {position!r}")
    wanted = _dedupe_tags([t.strip() for t in tags if t.strip()], case_insensitive=False)

    def edit(segments: list[str]) -> list[str] | None:
        present = {seg.strip() for seg in segments}
        missing = [t for t in wanted if t not in present]
        if not missing:
            return None
        if not "".join(segments).strip():
            return [missing[0], *(" " + t for t in missing[1:])]  # "a, b" as every other caption is written
        if position == "front":
            return [*missing[:1], *(" " + t for t in missing[1:]), " " + segments[0].lstrip(), *segments[1:]]
        body = list(segments)
        while len(body) > 1 and not body[-1].strip():
            body.pop()  # a trailing comma ("a, b,") is where the new tag goes
        body[-1] = body[-1].rstrip()
        return [*body, *(" " + t for t in missing)]

    return _segments_edit(caption, edit)


def move_to_front(caption: str, tag: str) -> str:
    """Move every occurrence of `tag` to the front of its line; the others keep their order."""
    tag = tag.strip()

    def edit(segments: list[str]) -> list[str] | None:
        moved = [seg for seg in segments if seg.strip() == tag]
        if not moved or segments[0].strip() == tag and len(moved) == 1:
            return None
        rest = [seg for seg in segments if seg.strip() != tag]
        head = [tag, *(" " + seg.strip() for seg in moved[1:])]
        return head + ([" " + rest[0].lstrip(), *rest[1:]] if rest else [])

    return _segments_edit(caption, edit)


def merge_variants(caption: str, variants: Iterable[str], into: str) -> str:
    """Spell every tag of `variants` as `into` (`long_hair` -> `long hair`), keeping one `into`.

    The explicit "merge these spellings" action: only `into` is deduplicated, where the caption
    held two spellings of it; every other tag stays exactly as it was.
    """
    into = into.strip()
    names = {v.strip() for v in variants} | {into}

    def edit(segments: list[str]) -> list[str] | None:
        if not any(seg.strip() in names and seg.strip() != into for seg in segments) and \
                sum(seg.strip() == into for seg in segments) < 2:
            return None
        out, seen = [], False
        for seg in segments:
            if seg.strip() in names:
                if seen:
                    continue
                seen = True
                seg = _respace(seg, into)
            out.append(seg)
        if out and out[0] != segments[0]:
            out[0] = out[0].lstrip()
        return out

    return _segments_edit(caption, edit)


def tag_variants(counts: Mapping[str, int]) -> list[list[tuple[str, int]]]:
    """Groups of tags that are one tag spelled differently (`long hair` / `long_hair` / `Long Hair`,
    `photo (medium)` / `photo_(medium)` / `photo \\(medium\\)`), most used spelling first.

    `counts` maps each tag to its image count; tags are compared by `tagexpr.normalise_tag`.
    """
    from app.datasets.tagexpr import normalise_tag

    groups: dict[str, list[tuple[str, int]]] = {}
    for tag, count in counts.items():
        groups.setdefault(normalise_tag(tag), []).append((tag, count))
    return sorted((sorted(g, key=lambda tc: (-tc[1], tc[0])) for g in groups.values() if len(g) > 1),
                  key=lambda g: -sum(c for _, c in g))


def replace_text(caption: str, find: str, replace: str, regex: bool = False, *,
                 deadline: saferegex.Deadline | None = None) -> str:
    """Replace text anywhere in the caption (not tag-aware); `regex` uses Python `re` syntax.

    A regex runs bounded (see app.datasets.saferegex): pass one `deadline` for a whole bulk edit. The result
    may not exceed `MAX_CAPTION_BYTES` characters. Raises ValueError (`saferegex.PatternError`)
    with a readable message for an invalid, too slow or too productive pattern.
    """
    if not find:
        return caption
    if regex:
        pattern = saferegex.compile_pattern(find)
        new = saferegex.sub(pattern, replace, caption, deadline or saferegex.Deadline(), max_chars=MAX_CAPTION_BYTES)
    else:
        # Checked before building: "a" -> 1,000 characters over a long caption is megabytes.
        if len(caption) + caption.count(find) * (len(replace) - len(find)) > MAX_CAPTION_BYTES:
            raise saferegex.OutputTooLarge(
                f"The replacement would make a caption longer than {MAX_CAPTION_BYTES:,} characters.")
        new = caption.replace(find, replace)
    return caption if new == caption else new


def drop_leading_blank_lines(caption: str) -> str:
    """`"\\nmychar, 1girl"` -> `"mychar, 1girl"`: kohya trains on the first line, which must hold the text."""
    lines = caption.split("\n")
    while len(lines) > 1 and not lines[0].strip():
        lines.pop(0)
    new = "\n".join(lines)
    return caption if new == caption else new
