"""The error tree: the drawing in `shared/errors.py` is the tree the classes make, with the HTTP
status each answers with; and the functions and the web page answer an error with that status."""

from __future__ import annotations

import json
import re

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request

from tasuki.shared import answers, errors
from tasuki.shared.errors import (
    ActionError,
    BodyTooLarge,
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    HostRefused,
    HostUnavailable,
    NoSuchLetter,
    StatusNotSent,
    StoreError,
    TasukiError,
    WebhookError,
)
from tasuki.shared.runtime import Runtime
from tasuki.shared.settings import Settings
from tasuki.shared.web import site

LINE = re.compile(r"^    (?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Z]\w+)(?P<rest>.*)$")


def drawing() -> list[tuple[int, str, str]]:
    """(depth, class name, status column) for every class in the docstring's tree."""
    rows = []
    for line in (errors.__doc__ or "").splitlines():
        match = LINE.match(line)
        if match:
            depth = len(match["indent"]) // 4 + (1 if "──" in line else 0)
            status = re.search(r"\s(\d{3}|own)$", match["rest"])
            rows.append((depth, match["name"], status.group(1) if status else ""))
    return rows


def test_the_drawing_is_the_tree_of_classes():
    drawn, parents = set(), {}
    stack: list[str] = []
    for depth, name, _ in drawing():
        del stack[depth:]
        if stack:
            parents[name] = stack[-1]
        stack.append(name)
        drawn.add(name)

    def subclasses(cls: type) -> set[type]:
        return {cls, *(sub for direct in cls.__subclasses__() for sub in subclasses(direct))}

    real = {cls for cls in subclasses(TasukiError) if cls.__module__ == errors.__name__}
    assert drawn == {cls.__name__ for cls in real}
    for cls in real - {TasukiError}:
        assert parents[cls.__name__] == cls.__bases__[0].__name__, cls


def test_the_drawn_statuses_are_the_classes_http_status():
    for _, name, status in drawing():
        cls = getattr(errors, name)
        if status == "own":
            assert "http_status" in cls.__init__.__code__.co_varnames, name
        elif status:
            assert cls.http_status == int(status), name


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (WebhookError(415, "not JSON"), 415),
        (DecodeError("not a run.updated"), 400),
        (BrokerUnavailable("RabbitMQ is down"), 503),
        (StoreError("disk full"), 503),
        (ConfigError("TASUKI_X: bad"), 500),
        (ActionError(409, "exists already"), 409),
        (NoSuchLetter("no dead letter x"), 404),
        (HostUnavailable("api.github.com answered 502"), 503),
        (HostRefused("bad token"), 502),
        (StatusNotSent("not a commit id"), 502),
        (BodyTooLarge("over 1024 bytes"), 413),
        (TasukiError("anything else"), 500),
    ],
)
def test_the_functions_the_api_and_the_page_answer_an_error_with_its_status(error, status, tmp_path, monkeypatch):
    @answers.translated
    def handler(request):
        raise error

    answered = handler(None)  # streamed: the rest of the request's body is left unread
    assert answered.is_streamed
    assert answered.status_code == status and str(error) in json.loads(answered.get_data())["error"]

    # Given the web page's views for the runs raise it
    def view(rt, request):
        raise error

    monkeypatch.setitem(site.VIEWS, "api.runs", view)
    monkeypatch.setitem(site.VIEWS, "runs", view)
    rt = Runtime(Settings(data_dir=tmp_path, amqp_url="amqp://guest:guest@127.0.0.1:1/"))
    web = Client(lambda environ, start: site.handle(Request(environ), rt)(environ, start))
    # Then the API answers JSON, the page its error page, both with the error's status
    api = web.get("/api/runs")
    assert api.status_code == status and str(error) in api.get_json()["error"]
    page = web.get("/runs")
    assert page.status_code == status and page.mimetype == "text/html"
