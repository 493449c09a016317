"""Pub/Sub attribute filters: syntax, semantics, and errors that point at the mistake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasuki.shared import filters
from tasuki.shared.errors import FilterError

PUSH = {"host": "bitbucket", "event": "repo.push", "repo": "acme/api", "ref": "main", "build.kind": "ci"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ('attributes.host = "bitbucket"', True),
        ('attributes.host = "github"', False),
        ('attributes.host != "github"', True),
        ('attributes.missing != "x"', True),  # != is NOT =, so an absent key matches
        ('attributes.missing = ""', False),
        ("attributes:repo", True),
        ("attributes:missing", False),
        ("NOT attributes:missing", True),
        ("-attributes:repo", False),
        ('hasPrefix(attributes.repo, "acme/")', True),
        ('hasPrefix(attributes.repo, "other/")', False),
        ('hasPrefix(attributes.missing, "")', False),
        ('attributes:host AND attributes.ref = "main" AND NOT attributes:tag', True),
        ('attributes.host = "github" OR attributes.host = "gitlab"', False),
        ('attributes.host = "github" OR (attributes:repo AND attributes.ref = "main")', True),
        ('NOT (attributes.host = "bitbucket" OR attributes:x)', False),
        ('attributes."build.kind" = "ci"', True),
        ("attributes.'build.kind' = 'ci'", True),
        ('attributes.ref = "m\\x61in"', True),
        ('attributes.ref = "\\u006dain"', True),
        ('attributes.ref = "\\155ain"', True),
        ('  attributes.host="bitbucket"AND(attributes:ref)  ', True),
    ],
)
def test_filters_match_as_pubsub_documents(text, expected):
    assert filters.parse(text).matches(PUSH) is expected


@pytest.mark.parametrize(
    ("text", "column", "says"),
    [
        ("attributes.host = bitbucket", 19, "expected a string literal"),
        ('attributes.host == "x"', 18, "expected a string literal such as \"value\", found '='"),
        ('attributes.host = "x" and attributes:y', 23, "operators are upper case: AND"),
        ("attributes:a AND attributes:b OR attributes:c", 31, "cannot be mixed without parentheses"),
        ("(attributes:a AND attributes:b", 31, "expected ')'"),
        ('attributes.host = "unclosed', 19, "string literal is not closed"),
        ('hasPrefix(attributes.repo "acme")', 27, "expected ',' after the attribute"),
        ('labels.host = "x"', 1, "expected 'attributes'"),
        ('attributes.ref = "\\q"', 19, "invalid escape"),
        ("attributes:host AND", 20, "found the end of the filter"),
        ('attributes.host = "x" # comment', 23, "unexpected character '#'"),
        ("attributes:" + "k" * 250, 257, "at most 256 bytes"),
    ],
)
def test_an_invalid_filter_is_refused_with_the_position_of_the_error(text, column, says):
    with pytest.raises(FilterError) as caught:
        filters.parse(text)
    message = str(caught.value)
    assert f"at column {column}:" in message and says in message, message
    assert caught.value.position == column - 1
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1  # the caret sits under the offending character


keys = st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=8).filter(lambda k: not k.startswith("-"))
values = st.text(max_size=8)


@given(st.dictionaries(keys, values, max_size=4), keys, values)
def test_equality_and_its_negation_are_exact_complements(attributes, key, value):
    literal = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    eq = filters.parse(f"attributes.{key} = {literal}")
    ne = filters.parse(f"attributes.{key} != {literal}")
    assert eq.matches(attributes) == (attributes.get(key) == value)
    assert ne.matches(attributes) is not eq.matches(attributes)
    prefix = filters.parse(f"hasPrefix(attributes.{key}, {literal})")
    assert prefix.matches(attributes) == (key in attributes and attributes[key].startswith(value))
