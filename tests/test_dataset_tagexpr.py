import pytest

from app.datasets.tagexpr import TagExprError, parse, tag_set


def matches(expr: str, tags: list[str]) -> bool:
    return parse(expr).matches(tag_set(tags))


IMAGE = ["1girl", "long_hair", "Smile", "blue eyes", "star \\(symbol\\)", "t-shirt"]


def test_and_or_not_with_multiword_tags() -> None:
    expr = "long hair AND (smile OR grin) AND NOT hat"
    assert matches(expr, IMAGE)
    assert not matches(expr, IMAGE + ["hat"])
    assert not matches(expr, ["long hair", "frown"])
    assert matches(expr, ["long hair", "grin"])


def test_minus_comma_quotes_and_implicit_and() -> None:
    assert matches('"blue eyes", -hat', IMAGE)
    assert not matches('"blue eyes", -smile', IMAGE)
    assert matches("smile -hat", IMAGE)
    assert not matches("smile -\"blue eyes\"", IMAGE)
    assert matches("t-shirt", IMAGE)  # a hyphen inside a tag is not NOT


def test_matching_ignores_case_underscores_and_escapes() -> None:
    assert matches("LONG_HAIR, smile", IMAGE)
    assert matches("star (symbol)", IMAGE)
    assert matches("star_(symbol)", IMAGE)
    assert matches('"star \\(symbol\\)"', IMAGE)


def test_precedence_not_then_and_then_or() -> None:
    # a OR b AND c == a OR (b AND c)
    assert matches("a OR b AND c", ["a"])
    assert not matches("a OR b AND c", ["b"])
    assert matches("NOT a OR b", ["a", "b"])
    assert not matches("NOT a AND b", ["a", "b"])


def test_lowercase_operator_words_are_part_of_tags() -> None:
    assert matches("black and white", ["black and white"])
    assert not matches("black and white", ["black", "white"])


def test_wildcards() -> None:
    assert matches("*hair", IMAGE)
    assert matches("blue*", IMAGE)
    assert not matches("*hat*", IMAGE)


def test_blank_matches_everything() -> None:
    assert matches("   ", [])


@pytest.mark.parametrize("expr, message, position", [
    ("long hair AND (smile OR grin", "Unbalanced parenthesis", 14),
    ("smile) OR grin", "Unbalanced parenthesis", 5),
    ("smile AND", "Missing tag after AND", 6),
    ("NOT", "Missing tag after NOT", 0),
    ("a OR OR b", "Expected a tag after OR", 5),
    ("AND smile", "Expected a tag here", 0),
    ('"blue eyes', "Unterminated quote", 0),
    ("a AND ()", "Empty parentheses", 6),
])
def test_errors_name_the_problem_and_position(expr: str, message: str, position: int) -> None:
    with pytest.raises(TagExprError) as error:
        parse(expr)
    assert message in str(error.value)
    assert error.value.position == position
    assert str(error.value).endswith(f"at position {position}")


# --- hostile expressions: bounded, refused with a clear message -----------------------------------

import random
import re
import time

from app.datasets import tagexpr


def nested_not_or(depth: int) -> str:
    """`NOT (a OR NOT (a OR …))`, the shape of the 150-deep filter from the security review."""
    return "NOT (a OR " * depth + "a" + ")" * depth


@pytest.mark.parametrize("text", [
    nested_not_or(150),
    "(" * 150 + "a" + ")" * 150,
    "NOT " * 150 + "a",
    "-" * 150 + "a",
])
def test_deep_nesting_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(TagExprError, match="nests too deeply|more than 100 tags"):
        parse(text)


def test_deep_nesting_with_few_tags_is_refused_by_depth() -> None:
    with pytest.raises(TagExprError, match="more than 20 levels"):
        parse("NOT (a OR " * 50 + "a" + ")" * 50)


def test_nesting_up_to_the_limit_works() -> None:
    expr = parse(nested_not_or(tagexpr.MAX_DEPTH // 2))
    assert expr.matches(tag_set(["b"])) is False  # NOT (a OR …) with no a: the innermost a decides


def test_size_limits() -> None:
    with pytest.raises(TagExprError, match="characters long"):
        parse("a, " * 1000)
    with pytest.raises(TagExprError, match="more than 100 tags"):
        parse(" OR ".join(f"t{n}" for n in range(101)))
    with pytest.raises(TagExprError, match=r"Too many \*"):
        parse("*a" * 9 + "*")
    assert parse(" OR ".join(f"t{n}" for n in range(100))).matches(tag_set(["t99"]))


def test_wildcards_match_like_a_glob_in_linear_time() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        pattern = "".join(rng.choice("ab*") for _ in range(rng.randint(1, 6)))
        text = "".join(rng.choice("ab") for _ in range(rng.randint(0, 7)))
        want = re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), text, re.DOTALL) is not None
        assert tagexpr.glob_match(pattern.split("*"), text) is want, (pattern, text)
    hostile = "a" * 60_000 + "b"
    start = time.perf_counter()
    assert not parse("*a*a*a*a*a*a*a*c").matches(frozenset([hostile]))
    assert time.perf_counter() - start < 0.5  # a backtracking regex takes minutes here
