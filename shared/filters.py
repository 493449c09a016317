"""Subscription filters in Google Cloud Pub/Sub's syntax: parsed once, matched against attributes.

    attributes.KEY = "v"        the attribute is present and equals "v"
    attributes.KEY != "v"       NOT (attributes.KEY = "v"): also true when KEY is absent
    attributes:KEY              the attribute is present (any value)
    hasPrefix(attributes.KEY, "p")   present and starts with "p"
    NOT x  (or -x)   x AND y AND ...   x OR y OR ...   ( ... )

As in Pub/Sub: operators are upper case; AND and OR cannot be mixed without parentheses;
a KEY made of anything but letters, digits, `_` and `-` is written as a string literal
(`attributes."build.kind"`); string literals take "..." or '...' with the usual escapes
(\\n \\t \\" \\\\, \\xHH, \\uHHHH, \\UHHHHHHHH, \\ooo octal); a filter is at most 256 bytes. The empty
filter matches every message.

`parse(text)` returns a `Filter` or raises `FilterError` whose message shows the filter with a
caret under the position of the error; `Filter.matches(attributes)` is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tasuki.shared.errors import FilterError

MAX_BYTES = 256
KEYWORDS = ("AND", "OR", "NOT")

Predicate = Callable[[Mapping[str, str]], bool]

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<op>!=|[=:.,()\-])
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9_\-]*)
      | (?P<string>["'])""",
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "`": "`",
    "?": "?",
}


@dataclass(frozen=True)
class Token:
    kind: str  # op, word, string, end
    text: str  # the operator or word; the decoded value of a string
    pos: int


@dataclass(frozen=True)
class Filter:
    source: str
    _test: Predicate

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self._test(attributes)


def parse(text: str) -> Filter:
    """A filter, or `FilterError` naming what was expected, what was found, and where."""
    if not text.strip():
        return Filter(text, lambda attributes: True)
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise _error(text, MAX_BYTES, f"a filter is at most {MAX_BYTES} bytes, this one has {size}")
    return Filter(text, _Parser(text).parse())


def _error(text: str, pos: int, message: str) -> FilterError:
    column = pos + 1
    return FilterError(f"invalid filter at column {column}: {message}\n  {text}\n  {' ' * pos}^", pos)


def _tokens(text: str) -> list[Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        if m.lastgroup == "string":
            value, pos = _string(text, pos)
            out.append(Token("string", value, m.start()))
            continue
        if m.lastgroup != "space":
            out.append(Token(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


def _string(text: str, start: int) -> tuple[str, int]:
    """Decode the string literal opening at `start`; its value and the position after it."""
    quote, pos = text[start], start + 1
    chars: list[str] = []
    while pos < len(text):
        c = text[pos]
        if c == quote:
            return "".join(chars), pos + 1
        if c != "\\":
            chars.append(c)
            pos += 1
            continue
        esc = text[pos + 1 : pos + 2]
        if esc in _ESCAPES:
            chars.append(_ESCAPES[esc])
            pos += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(esc)
        digits, base = (text[pos + 2 : pos + 2 + width], 16) if width else (text[pos + 1 : pos + 4], 8)
        valid = "0123456789abcdefABCDEF" if width else "01234567"
        if len(digits) != (width or 3) or any(d not in valid for d in digits) or int(digits, base) > 0x10FFFF:
            raise _error(text, pos, "invalid escape sequence in string literal")
        chars.append(chr(int(digits, base)))
        pos += (2 + width) if width else 4
    raise _error(text, start, "string literal is not closed")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: Token | None = None) -> FilterError:
        token = token or self.tok
        found = "the end of the filter" if token.kind == "end" else _describe(token)
        hint = ""
        if token.kind == "word" and token.text.upper() in KEYWORDS and token.text not in KEYWORDS:
            hint = f" (operators are upper case: {token.text.upper()})"
        return _error(self.text, token.pos, f"expected {expected}, found {found}{hint}")

    def take(self, kind: str, text: str | None = None, expected: str = "") -> Token:
        token = self.tok
        if token.kind != kind or (text is not None and token.text != text):
            raise self.fail(expected or repr(text))
        self.i += 1
        return token

    def at(self, kind: str, text: str) -> bool:
        return self.tok.kind == kind and self.tok.text == text

    def parse(self) -> Predicate:
        test = self.expression()
        if self.tok.kind != "end":
            raise self.fail("AND, OR or the end of the filter")
        return test

    def expression(self) -> Predicate:
        terms = [self.unary()]
        operator = None
        while self.tok.kind == "word" and self.tok.text in ("AND", "OR"):
            if operator is not None and self.tok.text != operator:
                raise _error(
                    self.text,
                    self.tok.pos,
                    f"{operator} and {self.tok.text} cannot be mixed "
                    "without parentheses; group them, e.g. (a AND b) OR c",
                )
            operator = self.tok.text
            self.i += 1
            terms.append(self.unary())
        if len(terms) == 1:
            return terms[0]
        combine = all if operator == "AND" else any
        return lambda attributes: combine(term(attributes) for term in terms)

    def unary(self) -> Predicate:
        if self.at("word", "NOT") or self.at("op", "-"):
            self.i += 1
            inner = self.unary()
            return lambda attributes: not inner(attributes)
        if self.at("op", "("):
            self.i += 1
            inner = self.expression()
            self.take("op", ")", "')' or AND/OR")
            return inner
        if self.at("word", "hasPrefix"):
            return self.has_prefix()
        return self.condition()

    def attribute_key(self) -> str:
        self.take("word", "attributes", "'attributes', 'hasPrefix(', NOT or '('")
        self.take("op", ".", "'.' or ':' after 'attributes'")
        return self.key()

    def key(self) -> str:
        if self.tok.kind in ("word", "string"):
            token = self.tok
            self.i += 1
            return token.text
        raise self.fail("an attribute key (a name, or a string literal)")

    def condition(self) -> Predicate:
        if self.at("word", "attributes") and self.tokens[self.i + 1].text == ":":
            self.i += 2
            key = self.key()
            return lambda attributes: key in attributes
        key = self.attribute_key()
        if not (self.at("op", "=") or self.at("op", "!=")):
            raise self.fail("'=' or '!=' after the attribute key")
        negate = self.tok.text == "!="
        self.i += 1
        value = self.take("string", expected='a string literal such as "value"').text
        if negate:
            return lambda attributes: attributes.get(key) != value
        return lambda attributes: attributes.get(key) == value

    def has_prefix(self) -> Predicate:
        self.i += 1
        self.take("op", "(", "'(' after hasPrefix")
        key = self.attribute_key()
        self.take("op", ",", "',' after the attribute")
        prefix = self.take("string", expected='a string literal such as "prefix"').text
        self.take("op", ")", "')' to close hasPrefix")

        def test(attributes: Mapping[str, str]) -> bool:
            value = attributes.get(key)
            return value is not None and value.startswith(prefix)

        return test


def _describe(token: Token) -> str:
    if token.kind == "string":
        return f"the string {token.text!r}"
    return repr(token.text)
