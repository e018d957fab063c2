import pytest

from app.datasets import tags as t


def test_split_and_join() -> None:
    assert t.split_tags(" 1girl ,long hair,, smile \nalt, tag") == ["1girl", "long hair", "smile", "alt", "tag"]
    assert t.split_tags("") == []
    assert t.join_tags(["a", "b c"]) == "a, b c"


@pytest.mark.parametrize("text, expected", [
    ("1girl, long hair, smile, looking at viewer", True),
    ("mychar, star \\(symbol\\), ..., !?", True),
    ("photo of tok", True),
    ("", True),
    ("A photo of a woman standing in a field, wearing a red dress.", False),
    ("tok, a woman with long red hair smiling at the camera in a park", False),
    ("A woman. She smiles", False),
])
def test_is_tag_caption(text: str, expected: bool) -> None:
    assert t.is_tag_caption(text) is expected


def test_underscores_follow_kohya_rule() -> None:
    assert t.underscores_to_spaces("long_hair, ^_^, >_<, star_(symbol)") == "long hair, ^_^, >_<, star (symbol)"
    assert t.spaces_to_underscores("long hair, ^_^,  blue   eyes") == "long_hair, ^_^, blue_eyes"


def test_escape_and_unescape_parens_do_not_double_escape() -> None:
    assert t.escape_parens("star (symbol), a \\(b\\)") == "star \\(symbol\\), a \\(b\\)"
    assert t.unescape_parens("star \\(symbol\\), x") == "star (symbol), x"
    assert t.unescape_parens(t.escape_parens("a (b)")) == "a (b)"


def test_dedupe_keeps_first_and_order() -> None:
    assert t.dedupe("a, b, a, B, c") == "a, b, B, c"
    assert t.dedupe("a, b, a, B, c", case_insensitive=True) == "a, b, c"


def test_trim_normalises_spacing_and_drops_empty_tags() -> None:
    assert t.trim(" a ,b,,  c   d ,\n") == "a, b, c d"
    assert t.trim("a, b") == "a, b"


def test_no_op_returns_the_same_string_so_callers_can_skip_the_write() -> None:
    caption = "a,b ,  c"  # odd spacing must survive when nothing changes
    results = [
        t.rename_tag(caption, "x", "y"), t.remove_tag(caption, "x"), t.add_tags(caption, ["a"]),
        t.move_to_front(caption, "a"), t.replace_text(caption, "zzz", "y"), t.dedupe(caption),
        t.underscores_to_spaces(caption), t.escape_parens(caption), t.unescape_parens(caption),
    ]
    assert all(result is caption for result in results)
    triggered = "tok,a"
    assert t.apply_trigger(triggered, "tok") is triggered


def test_rename_tag_never_merges_or_drops_other_tags() -> None:
    # Only the explicit "deduplicate" merges; a rename changes exactly the tag it names.
    assert t.rename_tag("a, smiling, b, smile", "smiling", "smile") == "a, smile, b, smile"
    assert t.rename_tag("1girl, smiling, 1girl, b", "smiling", "smile") == "1girl, smile, 1girl, b"
    assert t.rename_tag("a, b", "a", "c") == "c, b"
    assert t.rename_tag("a, b", "a", "") == "b"


def test_operations_work_on_every_line_and_keep_blank_lines() -> None:
    caption = "a, old\n\nold, b\n"
    assert t.rename_tag(caption, "old", "new") == "a, new\n\nnew, b\n"


def test_remove_add_move() -> None:
    assert t.remove_tag("a, b, a", "a") == "b"
    assert t.add_tags("a, b", ["c", "a", "d"]) == "a, b, c, d"
    assert t.add_tags("a, b", ["c", "d"], position="front") == "c, d, a, b"
    assert t.add_tags("", ["x"]) == "x"
    assert t.move_to_front("a, b, c", "c") == "c, a, b"
    with pytest.raises(ValueError):
        t.add_tags("a", ["b"], position="middle")


def test_replace_text_plain_and_regex() -> None:
    assert t.replace_text("red hair, red eyes", "red", "blue") == "blue hair, blue eyes"
    assert t.replace_text("1girl, 2girls", r"(\d)girls?", r"\1 person", regex=True) == "1 person, 2 person"
    with pytest.raises(ValueError, match="Invalid regular expression"):
        t.replace_text("a", "(", "b", regex=True)


def test_trigger_moved_or_inserted_first_in_tag_captions() -> None:
    assert t.apply_trigger("1girl, tok, smile", "tok") == "tok, 1girl, smile"
    assert t.apply_trigger("1girl, smile", "tok") == "tok, 1girl, smile"
    assert t.apply_trigger("TOK, 1girl, tok", "tok") == "tok, 1girl"
    assert t.apply_trigger("tok woman, smile", "tok") == "tok woman, smile"
    assert t.apply_trigger("", "tok") == "tok"


def test_trigger_placeholder_is_replaced() -> None:
    assert t.apply_trigger("1girl, [trigger], smile", "tok") == "tok, 1girl, smile"
    sentence = "a photo of [trigger] standing in a park at dusk"
    assert t.apply_trigger(sentence, "tok") == "a photo of tok standing in a park at dusk"


def test_trigger_prepended_to_natural_language_unless_it_starts_with_it() -> None:
    sentence = "A woman with red hair smiling at the camera."
    assert t.apply_trigger(sentence, "tok") == "tok, " + sentence
    assert t.apply_trigger("tok, " + sentence, "tok") == "tok, " + sentence
    assert t.apply_trigger("tok woman standing in a field of flowers.", "tok").startswith("tok woman")


def test_trigger_applied_to_each_alternative_line() -> None:
    assert t.apply_trigger("a, b\nc, d\n", "tok") == "tok, a, b\ntok, c, d\n"


def test_underscores_to_spaces_keeps_kaomoji_of_any_length() -> None:
    assert t.underscores_to_spaces("(o)_(o), <o>_<o>, ||_||, <|>_<|>, long_hair") == "(o)_(o), <o>_<o>, ||_||, <|>_<|>, long hair"
    assert t.underscores_to_spaces("photo_(medium), ^_^, o_o, (>_<)") == "photo (medium), ^_^, o_o, (>_<)"


def test_edits_leave_every_other_tag_duplicates_and_spacing_alone() -> None:
    caption = "mychar,1girl ,  1girl, smile,,x"
    assert t.add_tags(caption, ["hat"]) == "mychar,1girl ,  1girl, smile,,x, hat"
    assert t.remove_tag(caption, "smile") == "mychar,1girl ,  1girl,,x"
    assert t.rename_tag(caption, "smile", "grin") == "mychar,1girl ,  1girl, grin,,x"
    assert t.move_to_front(caption, "x") == "x, mychar,1girl ,  1girl, smile,"
    assert t.add_tags("mychar, 少女, 笑顔", ["smile"]) == "mychar, 少女, 笑顔, smile"
    assert t.add_tags("a, b,", ["c"]) == "a, b, c"


def test_leading_blank_line_is_fixed_by_trim_and_trigger_first() -> None:
    text = "\nmychar, 1girl\n"  # what b"\r\nmychar, 1girl\r\n" reads as
    assert t.trim(text) == "mychar, 1girl"
    assert t.apply_trigger(text, "mychar") == "mychar, 1girl\n"
    assert t.apply_trigger("\n\n1girl", "mychar") == "mychar, 1girl"


def test_tag_variants_and_merge() -> None:
    counts = {"long hair": 3, "long_hair": 2, "photo (medium)": 1, "photo_(medium)": 4, "smile": 5}
    assert sorted(t.tag_variants(counts)) == [[("long hair", 3), ("long_hair", 2)], [("photo_(medium)", 4), ("photo (medium)", 1)]]
    assert t.merge_variants("long_hair, a, long hair, b, a", ["long_hair"], "long hair") == "long hair, a, b, a"
    assert t.merge_variants("x, long_hair", ["long_hair"], "long hair") == "x, long hair"
    assert t.merge_variants("x, y", ["long_hair"], "long hair") == "x, y"
