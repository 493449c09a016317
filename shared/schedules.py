"""Schedules: the "if" of a rule that runs at set times, *every day at 02:00 UTC*.

A schedule is written as a cron expression (five fields, UTC: `0 2 * * *`) or as one of the
plain phrases the rule form offers, which read back the same way:

    hourly                  hourly at :15
    daily at 02:00          weekly on monday at 02:00

`parse()` turns either into a cron expression (a `ScheduleError` says what is wrong), `describe()`
says it as words for the rule's sentence, `latest_fire()` is the last time it fired in a window.

The clock (pure decisions here, I/O in functions/dispatcher.py): every tick asks the store to
claim the minutes since the last claimed one (`Store.claim_minutes`: of several clocks ticking at
once, one gets each minute, and a minute is never claimed twice). `due()` says which schedule
rules fired within the claimed minutes: each starts one run for its latest firing, so a clock
that was down for an hour catches up once, not once per missed firing. The window is bounded
(`CATCH_UP`): after a longer outage the clock resumes as if it had been down that long.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from croniter import CroniterBadCronError, croniter

from tasuki.shared.errors import ScheduleError

# How far back a clock that was down looks for missed firings (one run per rule at most).
CATCH_UP = timedelta(hours=24)
MAX_TEXT = 100
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
PHRASES = ("hourly", "hourly at :MM", "daily at HH:MM", "weekly on DAY at HH:MM", "a cron expression")

_HOURLY = re.compile(r"hourly(?: at :?(\d{1,2}))?")
_DAILY = re.compile(r"daily at (\d{1,2}):(\d{2})")
_WEEKLY = re.compile(r"weekly on ([a-z]+)(?: at (\d{1,2}):(\d{2}))?")


def parse(text: str) -> str:
    """A cron expression (five fields, UTC) from a phrase or a cron expression."""
    words = " ".join(str(text).lower().split())
    if not words:
        raise ScheduleError(f"a schedule is needed: {', '.join(PHRASES)}")
    if len(words) > MAX_TEXT:
        raise ScheduleError(f"a schedule is at most {MAX_TEXT} characters, found {len(words)}")
    if m := _HOURLY.fullmatch(words):
        return f"{_number(m[1] or '0', 59, 'minute')} * * * *"
    if m := _DAILY.fullmatch(words):
        return f"{_number(m[2], 59, 'minute')} {_number(m[1], 23, 'hour')} * * *"
    if m := _WEEKLY.fullmatch(words):
        if m[1] not in DAYS:
            raise ScheduleError(f"weekly on {m[1]!r}: expected a day, {', '.join(DAYS[1:] + DAYS[:1])}")
        hour, minute = (m[2], m[3]) if m[2] else ("0", "00")
        return f"{_number(minute, 59, 'minute')} {_number(hour, 23, 'hour')} * * {DAYS.index(m[1])}"
    fields = words.split(" ")
    if len(fields) != 5 or not re.fullmatch(r"[0-9a-z*/,\- ]+", words):
        raise ScheduleError(f"{text!r} is not a schedule: expected {', '.join(PHRASES)} (five fields, UTC)")
    try:
        croniter(words)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ScheduleError(f"{text!r} is not a cron expression: {exc}") from None
    return words


def _number(text: str, top: int, what: str) -> int:
    value = int(text)
    if value > top:
        raise ScheduleError(f"{what} {value} is out of range 0-{top}")
    return value


def describe(cron: str) -> str:
    """The schedule as words: `every day at 02:00 UTC`, `every hour at :15`, or the expression."""
    minute, hour, dom, month, dow = cron.split(" ")
    if not (minute.isdigit() and dom == "*" and month == "*"):
        return f"on schedule {cron} (UTC)"
    if hour == "*" and dow == "*":
        return "every hour" + (f" at :{int(minute):02d}" if int(minute) else "")
    if not hour.isdigit():
        return f"on schedule {cron} (UTC)"
    at = f"at {int(hour):02d}:{int(minute):02d} UTC"
    if dow == "*":
        return f"every day {at}"
    if dow.isdigit() and int(dow) <= 7:
        return f"every {DAYS[int(dow) % 7].capitalize()} {at}"
    return f"on schedule {cron} (UTC)"


def latest_fire(cron: str, after: datetime, until: datetime) -> datetime | None:
    """The last time the schedule fired in the window (after, until], or None."""
    if until <= after:
        return None
    last = croniter(cron, until + timedelta(seconds=1)).get_prev(datetime)
    return last if last > after else None


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def window(last: datetime | None, now: datetime) -> tuple[datetime, datetime] | None:
    """The minutes a clock claims at `now` when it last claimed up to `last` (None: never): the
    window (start, end] of whole minutes, at most `CATCH_UP` long; None if nothing new."""
    end = minute_of(now)
    start = end - timedelta(minutes=1) if last is None else max(last, end - CATCH_UP)
    return (start, end) if end > start else None
