"""Schedules (pure): phrases and cron expressions, their words, firing windows, schedule rules,
and the store's once-per-minute claim with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasuki.shared import recipes, schedules
from tasuki.shared.errors import ScheduleError
from tasuki.shared.store import new_store


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cron", "words"),
    [
        ("hourly", "0 * * * *", "every hour"),
        ("Hourly at :15", "15 * * * *", "every hour at :15"),
        ("daily at 02:00", "0 2 * * *", "every day at 02:00 UTC"),
        ("daily  at 2:05", "5 2 * * *", "every day at 02:05 UTC"),
        ("weekly on monday at 06:30", "30 6 * * 1", "every Monday at 06:30 UTC"),
        ("weekly on sunday", "0 0 * * 0", "every Sunday at 00:00 UTC"),
        ("0 2 * * *", "0 2 * * *", "every day at 02:00 UTC"),
        ("*/5 * * * *", "*/5 * * * *", "on schedule */5 * * * * (UTC)"),
        ("0 2 * * 1-5", "0 2 * * 1-5", "on schedule 0 2 * * 1-5 (UTC)"),
    ],
)
def test_a_phrase_or_a_cron_expression_becomes_cron_and_reads_as_words(text, cron, words):
    assert schedules.parse(text) == cron
    assert schedules.describe(cron) == words


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "a schedule is needed"),
        ("daily at 25:00", "hour 25 is out of range"),
        ("hourly at :75", "minute 75 is out of range"),
        ("weekly on funday", "expected a day"),
        ("every so often", "is not a schedule"),
        ("61 * * * *", "is not a cron expression"),
        ("* * * * * *", "is not a schedule"),
        ("0 2 * * * ; rm -rf /", "is not a schedule"),
        ("x" * 500, "at most 100 characters"),
    ],
)
def test_what_is_not_a_schedule_is_refused_saying_why(text, says):
    with pytest.raises(ScheduleError, match=says):
        schedules.parse(text)


def test_the_latest_firing_in_a_window_counts_once():
    cron = schedules.parse("hourly at :30")
    assert schedules.latest_fire(cron, at(3, 29), at(3, 30)) == at(3, 30)
    assert schedules.latest_fire(cron, at(3, 30), at(3, 31)) is None  # (after, until]: 03:30 is past
    assert schedules.latest_fire(cron, at(3, 30), at(6, 45)) == at(6, 30)  # three missed: the last one
    assert schedules.latest_fire(cron, at(6, 45), at(6, 45)) is None


def test_a_clock_claims_whole_minutes_and_at_most_a_day_back():
    assert schedules.window(None, at(2, 0, 40)) == (at(1, 59), at(2, 0))
    assert schedules.window(at(2, 0), at(2, 0, 59)) is None
    assert schedules.window(at(2, 0), at(2, 3, 1)) == (at(2, 0), at(2, 3))
    week_later = at(2, 0, day=8)
    assert schedules.window(at(2, 0), week_later) == (week_later - schedules.CATCH_UP, week_later)


def test_a_schedule_rule_names_one_repository_and_branch_and_reads_as_a_sentence():
    rule = recipes.Rule(
        event="schedule", schedule="daily at 02:00", repository="acme/api", branch="main", jobs=["nightly"]
    )
    assert rule.schedule == "0 2 * * *"
    assert rule.sentence() == "every day at 02:00 UTC on acme/api main, run .tasuki.yml (jobs nightly)"
    assert recipes.Rule.model_validate(rule.model_dump()) == rule  # stored and read back, the same rule
    for wrong, says in [
        ({"repository": "acme/*", "branch": "main"}, "one repository"),
        ({"repository": "acme/api"}, "one branch"),
        ({"repository": "acme/api", "branch": "main", "schedule": "whenever"}, "not a schedule"),
        ({"repository": "acme/api", "branch": "main", "cancel_previous": True}, "not to schedules"),
    ]:
        with pytest.raises(ValueError, match=says):
            recipes.Rule.model_validate({"event": "schedule", "schedule": "hourly", **wrong})
    with pytest.raises(ValueError, match="schedule applies to rules for event schedule"):
        recipes.Rule(repository="acme/api", schedule="hourly")


def test_rules_without_a_schedule_keep_their_ids():
    # A rule's id is stable across versions: the rules file's rules are matched by it.
    assert recipes.Rule(repository="acme/api", branch="main").id == "4690852cc2a8"


def test_the_clock_finds_the_due_schedule_rules_once_each():
    nightly = recipes.Rule(event="schedule", schedule="daily at 02:00", repository="acme/api", branch="main")
    half = recipes.Rule(event="schedule", schedule="hourly at :30", repository="acme/api", branch="develop")
    off = recipes.Rule(event="schedule", schedule="hourly at :30", repository="acme/web", branch="main", enabled=False)
    push = recipes.Rule(repository="acme/api")
    rules = [nightly, half, off, push]
    assert recipes.scheduled(rules, at(1, 59), at(2, 0)) == [(nightly, at(2, 0))]
    assert recipes.scheduled(rules, at(2, 0), at(2, 29)) == []
    assert recipes.scheduled(rules, at(2, 0), at(6, 45)) == [(half, at(6, 30))]
    event = recipes.scheduled_event(half, at(6, 30))
    assert (event.kind, event.ref.name, event.after, event.repository.full_name) == (
        "schedule",
        "develop",
        "",
        "acme/api",
    )
    assert recipes.run_id(event, half) == recipes.run_id(recipes.scheduled_event(half, at(6, 30)), half)
    assert not any(rule.matches(event) for rule in rules)  # no git event starts a schedule rule


def test_the_store_gives_each_minute_to_one_clock_with_a_fake_clock(make_settings):
    settings = make_settings()
    first, second = new_store(settings), new_store(settings)  # two clock processes, one store
    try:
        assert first.claim_minutes("schedules", at(2, 0, 5)) == (at(1, 59), at(2, 0))
        assert second.claim_minutes("schedules", at(2, 0, 6)) is None  # the same minute: taken
        assert first.claim_minutes("schedules", at(2, 0, 55)) is None
        assert second.claim_minutes("schedules", at(2, 1, 1)) == (at(2, 0), at(2, 1))
        # a clock outage: the missed minutes are claimed once, together
        assert first.claim_minutes("schedules", at(5, 0, 2)) == (at(2, 1), at(5, 0))
        assert second.claim_minutes("schedules", at(5, 0, 3)) is None
        # a claim whose runs could not be requested is given back, and claimed again
        second.unclaim_minutes("schedules", (at(2, 1), at(5, 0)))
        assert second.claim_minutes("schedules", at(5, 0, 20)) == (at(2, 1), at(5, 0))
    finally:
        first.close()
        second.close()
