"""Filter expressions over an image's tags: `long hair AND (smile OR grin) AND NOT hat`.

Syntax
- Tags are written as they are, spaces included: `long hair`. Quote a tag that contains an
  operator word, a comma or a paren: `"black and white"`, `"star (symbol)"`.
- Operators are upper-case words `AND`, `OR`, `NOT` (lower-case `and`/`or`/`not` are ordinary
  words, since booru tags are lower case); a comma also means AND, `-tag` means NOT, and two
  terms side by side (`smile -hat`) are ANDed. Precedence: NOT, then AND, then OR.
- `*` is a wildcard: `*hair` matches any tag ending in "hair".
- A parenthesised qualifier straight after a tag with no operator inside is part of the tag,
  the way booru tags are spelled: `star (symbol)`, `hatsune_miku_(append)`.
Matching ignores case, treats `_` like a space and `\\(` like `(`, so it works whichever way
the dataset spells its tags. A blank expression matches everything.

Expressions come from users (and from links other sites can make), so their size is bounded
before any work: `MAX_CHARS` characters, `MAX_TERMS` tags, `MAX_DEPTH` nested parentheses/NOTs
and `MAX_WILDCARDS` stars per tag. Wildcards are matched in linear time, without a regex.
"""
from collections.abc import Iterable
from dataclasses import dataclass

# Far above any filter a person writes (a few tags, two or three levels), far below what could
# exhaust Python's stack or SQLite's expression depth (1000).
MAX_CHARS = 2000
MAX_TERMS = 100
MAX_DEPTH = 20
MAX_WILDCARDS = 8

_KEYWORDS = {"AND", "OR", "NOT"}
_TERM_BREAK = set('(),"') | {" ", "\t", "\n", "\r"}


class TagExprError(ValueError):
    """A malformed expression; `position` is the 0-based index of the problem in the text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


def normalise_tag(tag: str) -> str:
    """The form tags are compared in: case-folded, `_` as space, paren escapes removed."""
    return " ".join(tag.replace("\\(", "(").replace("\\)", ")").replace("_", " ").casefold().split())


def tag_set(tags: Iterable[str]) -> frozenset[str]:
    """Prepare an image's tags for `Expr.matches` (do it once per image, not per query)."""
    return frozenset(normalise_tag(tag) for tag in tags)


class Expr:
    def matches(self, tags: frozenset[str]) -> bool:
        """`tags` must come from `tag_set`, so spelling differences do not matter."""
        raise NotImplementedError


@dataclass(frozen=True)
class MatchAll(Expr):
    def matches(self, tags: frozenset[str]) -> bool:
        return True

    def __str__(self) -> str:
        return "*ALL*"


@dataclass(frozen=True)
class Tag(Expr):
    name: str  # normalised

    def matches(self, tags: frozenset[str]) -> bool:
        return self.name in tags

    def __str__(self) -> str:
        return f'"{self.name}"'


@dataclass(frozen=True)
class Wildcard(Expr):
    pattern: str  # normalised, with *

    def matches(self, tags: frozenset[str]) -> bool:
        parts = self.pattern.split("*")
        return any(glob_match(parts, tag) for tag in tags)

    def __str__(self) -> str:
        return f'"{self.pattern}"'


def glob_match(parts: list[str], text: str) -> bool:
    """Whether `text` matches the pattern `"*".join(parts)` (`*`: any run of characters).

    Greedy and linear: each literal part is found once, leftmost, after the previous one; this
    is exact for patterns whose only wildcard is `*`, so no input can make it backtrack.
    """
    if len(parts) == 1:
        return text == parts[0]
    first, *middle, last = parts
    if not text.startswith(first) or len(text) < len(first) + len(last) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for part in middle:
        found = text.find(part, position, end)
        if found == -1:
            return False
        position = found + len(part)
    return True


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr

    def matches(self, tags: frozenset[str]) -> bool:
        return not self.operand.matches(tags)

    def __str__(self) -> str:
        return f"NOT {self.operand}"


class And(Expr):
    """Plain tags are checked with one subset and one disjoint test; the rest one by one."""

    def __init__(self, operands: list[Expr]) -> None:
        self.operands = operands
        self.required = frozenset(op.name for op in operands if isinstance(op, Tag))
        self.excluded = frozenset(
            op.operand.name for op in operands if isinstance(op, Not) and isinstance(op.operand, Tag)
        )
        self.others = [
            op for op in operands
            if not isinstance(op, Tag) and not (isinstance(op, Not) and isinstance(op.operand, Tag))
        ]

    def matches(self, tags: frozenset[str]) -> bool:
        return (
            self.required <= tags
            and self.excluded.isdisjoint(tags)
            and all(op.matches(tags) for op in self.others)
        )

    def __str__(self) -> str:
        return "(" + " AND ".join(str(op) for op in self.operands) + ")"


class Or(Expr):
    def __init__(self, operands: list[Expr]) -> None:
        self.operands = operands
        self.any_of = frozenset(op.name for op in operands if isinstance(op, Tag))
        self.others = [op for op in operands if not isinstance(op, Tag)]

    def matches(self, tags: frozenset[str]) -> bool:
        return not self.any_of.isdisjoint(tags) or any(op.matches(tags) for op in self.others)

    def __str__(self) -> str:
        return "(" + " OR ".join(str(op) for op in self.operands) + ")"


@dataclass
class _Token:
    kind: str  # "tag", "and", "or", "not", "(", ")"
    pos: int
    text: str = ""
    quoted: bool = False


def _read_word(expr: str, i: int) -> tuple[str, int]:
    """An unquoted word from index i; backslash escapes the next character."""
    chars = []
    n = len(expr)
    while i < n and expr[i] not in _TERM_BREAK:
        if expr[i] == "\\" and i + 1 < n:
            chars.append(expr[i:i + 2])  # kept escaped; normalise_tag removes paren escapes
            i += 2
        else:
            chars.append(expr[i])
            i += 1
    return "".join(chars), i


def _qualifier_end(expr: str, start: int) -> int | None:
    """If expr[start] == "(" opens a plain qualifier like "(symbol)", the index after its ")"."""
    close = expr.find(")", start + 1)
    if close == -1:
        return None
    inner = expr[start + 1:close]
    if not inner.strip() or any(c in inner for c in '(,"'):
        return None
    words = inner.split()
    if any(w in _KEYWORDS or w.startswith("-") for w in words):
        return None
    return close + 1


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == ",":
            tokens.append(_Token("and", i, ","))
            i += 1
        elif c == "(":
            prev = tokens[-1] if tokens else None
            end = _qualifier_end(expr, i) if prev and prev.kind == "tag" and not prev.quoted else None
            if end is not None:
                glue = " " if i > 0 and expr[i - 1].isspace() else ""
                prev.text += glue + expr[i:end]
                i = end
            else:
                tokens.append(_Token("(", i))
                i += 1
        elif c == ")":
            tokens.append(_Token(")", i))
            i += 1
        elif c == '"':
            j, chars = i + 1, []
            while j < n and expr[j] != '"':
                if expr[j] == "\\" and j + 1 < n and expr[j + 1] == '"':
                    j += 1
                chars.append(expr[j])
                j += 1
            if j >= n:
                raise TagExprError("Unterminated quote", i)
            tokens.append(_Token("tag", i, "".join(chars), quoted=True))
            i = j + 1
        elif c == "-" and i + 1 < n and expr[i + 1] not in " \t\n\r,)":
            tokens.append(_Token("not", i, "-"))
            i += 1
        else:
            word, j = _read_word(expr, i)
            if word in _KEYWORDS:
                tokens.append(_Token(word.lower(), i, word))
            elif tokens and tokens[-1].kind == "tag" and not tokens[-1].quoted:
                # Words of one tag are separated by single spaces: "long hair".
                tokens[-1].text += " " + word
            else:
                tokens.append(_Token("tag", i, word))
            i = j
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TagExprError(f"Filter nests too deeply (more than {MAX_DEPTH} levels of parentheses or NOT)", token.pos)

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while (token := self.peek()) and token.kind == "or":
            self.take()
            operands.append(self.parse_and(after=token))
        return operands[0] if len(operands) == 1 else Or(operands)

    def parse_and(self, after: _Token | None = None) -> Expr:
        operands = [self.parse_not(after)]
        while (token := self.peek()) and token.kind not in ("or", ")"):
            if token.kind == "and":
                self.take()
                operands.append(self.parse_not(after=token))
            else:
                operands.append(self.parse_not())  # side by side: implicit AND
        return operands[0] if len(operands) == 1 else And(operands)

    def parse_not(self, after: _Token | None = None) -> Expr:
        token = self.peek()
        if token and token.kind == "not":
            self.take()
            self.nest(token)
            operand = self.parse_not(after=token)
            self.depth -= 1
            return Not(operand)
        return self.parse_atom(after)

    def parse_atom(self, after: _Token | None) -> Expr:
        token = self.peek()
        if token is None:
            if after is not None:
                raise TagExprError(f"Missing tag after {after.text or after.kind.upper()}", after.pos)
            raise TagExprError("Empty expression", 0)
        if token.kind == "(":
            self.take()
            if (inner := self.peek()) and inner.kind == ")":
                raise TagExprError("Empty parentheses", token.pos)
            self.nest(token)
            expr = self.parse_or()
            self.depth -= 1
            close = self.peek()
            if close is None or close.kind != ")":
                raise TagExprError("Unbalanced parenthesis", token.pos)
            self.take()
            return expr
        if token.kind == "tag":
            self.take()
            name = normalise_tag(token.text)
            if not name:
                raise TagExprError("Empty tag", token.pos)
            if name.count("*") > MAX_WILDCARDS:
                raise TagExprError(f"Too many * in one tag (the limit is {MAX_WILDCARDS})", token.pos)
            return Wildcard(name) if "*" in name else Tag(name)
        if token.kind == ")":
            if after is not None:
                raise TagExprError(f"Missing tag after {after.text or after.kind.upper()}", after.pos)
            raise TagExprError("Unbalanced parenthesis", token.pos)
        where = f"after {after.text}" if after is not None else "here"
        raise TagExprError(f"Expected a tag {where}, found {token.text}", token.pos)


def parse(expr: str) -> Expr:
    """Parse a filter expression; raises `TagExprError` with the position of the problem.

    Over-long or over-nested expressions are refused (see the limits above) before any work
    that grows with them.
    """
    if len(expr) > MAX_CHARS:
        raise TagExprError(f"Filter is {len(expr):,} characters long; the limit is {MAX_CHARS:,}", MAX_CHARS)
    tokens = _tokenize(expr)
    terms = [token for token in tokens if token.kind == "tag"]
    if len(terms) > MAX_TERMS:
        raise TagExprError(f"Filter names more than {MAX_TERMS} tags", terms[MAX_TERMS].pos)
    if not tokens:
        return MatchAll()
    parser = _Parser(tokens)
    result = parser.parse_or()
    leftover = parser.peek()
    if leftover is not None:
        # Only a ")" without its "(" can stop the top-level parse early.
        raise TagExprError("Unbalanced parenthesis", leftover.pos)
    return result
