"""Log lines: the JSON form carries delivery, run and job; the readable form is one readable line;
the context follows a request, a run or a job and ends with it."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from tasuki.shared import logs, push
from tasuki.shared.flowfile import Job
from tasuki.shared.messages import Event, JobFinished, JobOrder, Repository, RunRequested


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def configured() -> Iterator[None]:
    """`logs.configure` replaces the root logger's handlers: put back pytest's afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def written(log_format: logs.Format, emit, stream: io.StringIO | None = None) -> str:
    """What `emit(logger)` writes through a handler in `log_format`."""
    stream = stream if stream is not None else io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(log_format, stream))
    logger = logging.getLogger(f"tasuki.test.{log_format}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    emit(logger)
    return stream.getvalue()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_json_form_carries_delivery_run_and_job():
    def emit(log):
        with logs.context(delivery="bitbucket:d-1", run="r-1", job="build"):
            log.warning("push of %s failed", "m-1")

    [line] = json_lines(written("json", emit))
    assert line["level"] == "warning" and line["logger"] == "tasuki.test.json"
    assert line["message"] == "push of m-1 failed"
    assert (line["delivery"], line["run"], line["job"]) == ("bitbucket:d-1", "r-1", "build")
    assert line["time"].endswith("Z") and "T" in line["time"]


def test_fields_not_known_are_left_out_and_a_block_ends_its_fields():
    def emit(log):
        with logs.context(run="r-1"):
            with logs.context(job="test"):
                log.info("inner")
            log.info("outer")
        log.info("after")

    inner, outer, after = json_lines(written("json", emit))
    assert (inner["run"], inner["job"]) == ("r-1", "test") and "delivery" not in inner
    assert outer["run"] == "r-1" and "job" not in outer
    assert not {"delivery", "run", "job"} & set(after)


def test_a_traceback_stays_inside_its_json_line():
    def emit(log):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")

    [line] = json_lines(written("json", emit))
    assert "ValueError: boom" in line["exception"] and line["level"] == "error"


def test_the_readable_form_is_one_line_with_level_logger_message_and_fields():
    def emit(log):
        with logs.context(run="r-1", job="lint"):
            log.info("job %s: success", "lint")

    [line] = written("text", emit).splitlines()
    assert "INFO" in line and "tasuki.test.text: job lint: success" in line
    assert line.endswith("run=r-1 job=lint")
    assert "\033[" not in line  # text: no colours


def test_the_coloured_form_colours_the_level():
    [line] = written("color", lambda log: log.error("no")).splitlines()
    assert "\033[31mERROR" in line and line.endswith("no")


def test_auto_is_coloured_on_a_terminal_and_json_elsewhere():
    assert "\033[" in written("auto", lambda log: log.info("hi"), Terminal())
    assert json.loads(written("auto", lambda log: log.info("hi")))["message"] == "hi"
    assert logs.resolved("auto", Terminal()) == "color" and logs.resolved("auto", io.StringIO()) == "json"
    assert logs.resolved("text", Terminal()) == "text"


def test_a_sender_cannot_forge_or_recolour_a_line_nor_make_it_long():
    hostile = "main\n12:00:00 ERROR tasuki.executor: forged\033[31m" + "x" * 5000

    def emit(log):
        with logs.context(delivery=hostile):
            log.info("branch %s", hostile)

    text = written("text", emit)
    assert len(text.splitlines()) == 1 and "\033" not in text and "\\n12:00:00" in text
    assert len(text.split("delivery=", 1)[1]) < logs.MAX_FIELD + 100
    [line] = json_lines(written("json", emit))
    assert len(line["delivery"]) <= logs.MAX_FIELD + 1 and line["message"].startswith("branch main\n")


def test_a_line_logged_inside_a_scoped_request_has_the_run_and_the_next_request_does_not():
    @logs.scoped
    def handler(log: logging.Logger, attributes: dict[str, str]) -> None:
        logs.bind(**logs.fields(attributes))
        log.warning("handled")

    def emit(log):
        handler(log, {"run": "r-7", "type": "run.requested", "repo": "acme/api"})
        handler(log, {"type": "event"})  # the same thread, the next request

    first, second = json_lines(written("json", emit))
    assert first["run"] == "r-7" and "repo" not in first
    assert "run" not in second
    assert logs.current() == {}


def test_a_pushed_message_binds_its_fields_for_the_request():
    """push.receive_message, every pushed-to handler's first step, puts the message's attributes
    into the request's context."""
    key = "a-push-key-of-at-least-32-bytes-long"

    class Request:
        headers = {"Authorization": f"Bearer {push.tokens.sign(key, 'https://f/')}"}

        def __init__(self, body: bytes) -> None:
            self.content_length = len(body)
            self.stream = io.BytesIO(body)

    from tasuki.shared import codec

    message = JobFinished(run_id="r-9", job="test", status="success")
    body = push.envelope(
        codec.encode(message),
        attributes={**message.attributes(), "type": message.TYPE},
        message_id="m",
        publish_ms=0,
        subscription="s",
        delivery_attempt=1,
    )

    @logs.scoped
    def handle() -> dict[str, str]:
        verifier = push.tokens.Verifier(key, "https://f/")
        push.receive_message(Request(json.dumps(body).encode()), verifier, accepts={"job.finished": JobFinished})
        return logs.current()

    assert handle() == {"run": "r-9", "job": "test"}
    assert logs.current() == {}


def test_the_context_of_one_thread_is_not_another_threads():
    seen: dict[str, dict[str, str]] = {}
    inside, done = threading.Event(), threading.Event()

    def job() -> None:
        with logs.context(run="r-1", job="a"):
            inside.set()
            done.wait(5)
            seen["worker"] = logs.current()

    worker = threading.Thread(target=job)
    worker.start()
    inside.wait(5)
    seen["main"] = logs.current()
    done.set()
    worker.join()
    assert seen == {"worker": {"run": "r-1", "job": "a"}, "main": {}}


def test_messages_carry_their_log_fields_as_attributes():
    event = Event(
        host="bitbucket",
        event="repo.push",
        kind="push",
        delivery_id="bitbucket:d",
        repository=Repository(full_name="a/b"),
    )
    job = Job(name="build", image="busybox", run="ci/build")
    assert logs.fields(event.attributes()) == {"delivery": "bitbucket:d"}
    assert logs.fields(RunRequested(run_id="r", rule_id="x", event=event).attributes()) == {
        "delivery": "bitbucket:d",
        "run": "r",
    }
    assert logs.fields(JobOrder(run_id="r", event=event, job=job).attributes()) == {
        "delivery": "bitbucket:d",
        "run": "r",
        "job": "build",
    }
    assert logs.fields(JobFinished(run_id="r", job="build", status="success").attributes()) == {
        "run": "r",
        "job": "build",
    }


def test_configure_sends_every_logger_to_the_stream_in_the_chosen_form(configured):
    stream = io.StringIO()
    logs.configure("json", "warning", stream)
    logging.getLogger("tasuki.anything").info("not written: below the level")
    with logs.context(run="r-2"):
        logging.getLogger("tasuki.anything").warning("written")
    logging.getLogger("pika.connection").error("pika's own noise is left out")
    [line] = json_lines(stream.getvalue())
    assert (line["message"], line["run"]) == ("written", "r-2")
