"""The story of a delivery: what became of one webhook delivery (or one firing of a schedule),
told in steps that each function writes as it handles its part (`Store.tell`):

    ingress     accepted (the events it made, kept so the delivery can be replayed), ignored,
                or refused with its HTTP status and why; a later duplicate is its own step
    clock       a schedule rule fired: the run it started (the clock's "delivery")
    router      per event: every rule weighed, matched or the first reason it did not
                (`recipes.mismatch`), and the runs it requested
    run         how a run it started ended, when that explains something: cancelled (by a newer
                push, naming the run), or every job skipped by the flow file's `when`

Everything here is pure: the step records (plain JSON-able dicts, bounded to `STEP_BYTES` since
a sender controls most of what is in them) and `outcome()`, the one line the Deliveries page
shows. The store keeps the steps; retention (TASUKI_RETENTION_DELIVERIES_DAYS) prunes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tasuki.shared import recipes
from tasuki.shared.messages import RUN_FINAL, Event
from tasuki.shared.text import clip

# One step's record, as JSON, at most this many bytes (events' payloads go first, then events).
STEP_BYTES = 64 * 1024
REASON_CHARS = 500
MAX_RULES = 200  # rules listed per event (the closest is always among them)
# The order a story's steps are told in, whatever order they were written in.
ORDER = ("ingress", "clock", "router", "duplicate", "run")
# Event headers of the hosts Tasuki knows, named in the story of a refused delivery.
EVENT_HEADERS = ("X-Event-Key", "X-GitHub-Event", "X-Gitlab-Event")


def event_summary(event: Event) -> dict[str, Any]:
    return {
        "key": clip(event.routing_key, 200),
        "kind": event.kind,
        "repository": clip(event.repository.full_name, 200),
        "ref": clip(event.ref.name, 200) if event.ref else "",
        "commit": event.after[:64],
        "message": clip(event.head_message.splitlines()[0] if event.head_message else "", 200),
        "actor": clip(event.actor, 100),
        "pull_request": event.pull_request.number if event.pull_request else None,
    }


def accepted(
    host: str, event_name: str, repository: str, events: list[Event], *, replay_of: str = ""
) -> dict[str, Any]:
    """The ingress published these events: the story keeps them (for replay) within bounds."""
    record: dict[str, Any] = {
        "kind": "ingress",
        "status": "accepted",
        "host": clip(host, 50),
        "event": clip(event_name, 100),
        "repository": clip(repository, 200),
        "events": [event_summary(e) for e in events],
        "replay": [e.model_dump(mode="json") for e in events],
    }
    if replay_of:
        record["replay_of"] = replay_of
    return bounded(record)


def answered(status: str, host: str, event_name: str, repository: str, reason: str) -> dict[str, Any]:
    """The ingress answered without publishing: ignored (an event Tasuki does not act on), pong."""
    return {
        "kind": "ingress",
        "status": status,
        "host": clip(host, 50),
        "event": clip(event_name, 100),
        "repository": clip(repository, 200),
        "reason": clip(reason, REASON_CHARS),
    }


def refused(code: int, reason: str, headers: Mapping[str, str], claimed_id: str) -> dict[str, Any]:
    """The ingress refused the delivery (nothing published): its status and why."""
    sent = {name: clip(headers.get(name, ""), 100) for name in EVENT_HEADERS if headers.get(name)}
    return {
        "kind": "ingress",
        "status": "refused",
        "code": code,
        "reason": clip(reason, REASON_CHARS),
        "headers": sent,
        "claimed_id": clip(claimed_id, 200),
    }


def refused_id(code: int, reason: str, at: datetime) -> str:
    """The id a refused delivery's story is kept under: the minute and a hash of the refusal, so
    the same refusal again within the minute is the same story (a flood is not a row each), and
    no sender can name (and so overwrite) a real delivery's story."""
    same = hashlib.sha256(f"{code}|{reason}".encode()).hexdigest()[:12]
    return f"refused-{at:%Y%m%dT%H%MZ}-{same}"


def duplicate() -> dict[str, Any]:
    return {"kind": "duplicate", "reason": "the same delivery again: nothing new was published"}


def weighed(
    event: Event, weighing: list[tuple[recipes.Rule, recipes.Mismatch | None]], runs: Mapping[str, str]
) -> dict[str, Any]:
    """The router's part: the event, every rule weighed (the reason each did not match), the
    runs requested (rule id -> run id)."""
    near = recipes.closest(weighing)
    listed = weighing[:MAX_RULES]
    if near is not None and all(rule.id != near[0].id for rule, _ in listed):
        listed.append(near)
    return bounded(
        {
            "kind": "router",
            "event": event_summary(event),
            "skip_ci": recipes.skip_requested(event),
            "rules": [
                {
                    "id": rule.id,
                    "sentence": rule.sentence(),
                    "matched": why is None,
                    "check": why.check if why else "",
                    "rank": why.rank if why else None,
                    "reason": why.reason if why else "",
                    "run": runs.get(rule.id, ""),
                }
                for rule, why in listed
            ],
            "rules_weighed": len(weighing),
            "closest": near[0].id if near else "",
        }
    )


def fired(rule: recipes.Rule, at: datetime, run_id: str) -> dict[str, Any]:
    """The clock's part: a schedule rule fired and started a run (of the branch's head)."""
    return {
        "kind": "clock",
        "rule": rule.id,
        "sentence": rule.sentence(),
        "fired_at": at.isoformat(),
        "branch": rule.branch,
        "repository": rule.repository,
        "run": run_id,
    }


def run_ended(run_id: str, status: str, message: str, job_statuses: list[str]) -> dict[str, Any] | None:
    """How a run ended, when that is part of the delivery's story: cancelled (the message names
    who cancelled it: a newer push, naming its run, or a person), or every job skipped by the
    flow file's `when`. None for a run that is not over or simply passed or failed."""
    if status not in RUN_FINAL:
        return None
    if status == "cancelled":
        why = message or "cancelled"
    elif (job_statuses and all(s == "skipped" for s in job_statuses)) or (not job_statuses and status == "success"):
        why = "the flow file's `when` skipped every job"
    else:
        return None
    return {"kind": "run", "run": run_id, "status": status, "reason": clip(why, REASON_CHARS)}


def bounded(record: dict[str, Any]) -> dict[str, Any]:
    """The record within `STEP_BYTES` as JSON: the events' payloads are dropped first (a replay
    then carries the normalised events without the host's raw delivery), then events and rules."""
    if _size(record) <= STEP_BYTES:
        return record
    record = dict(record)
    if record.get("replay"):
        record["replay"] = [{**e, "payload": {}} for e in record["replay"]]
        record["payload_dropped"] = True
    for key in ("replay", "events", "rules"):
        while record.get(key) and _size(record) > STEP_BYTES:
            record[key] = record[key][: len(record[key]) // 2]
            record[f"{key}_cut"] = True
    return record


def _size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, default=str))


def ordered(steps: list[tuple[str, datetime, dict[str, Any]]]) -> list[tuple[str, datetime, dict[str, Any]]]:
    """A story's steps in the order they happen (ingress, clock, router, runs), then by time."""

    def place(step: tuple[str, datetime, dict[str, Any]]) -> tuple[int, datetime]:
        kind = step[2].get("kind", "")
        return (ORDER.index(kind) if kind in ORDER else len(ORDER), step[1])

    return sorted(steps, key=place)


def outcome(steps: list[tuple[str, datetime, dict[str, Any]]]) -> str:
    """One line: what became of the delivery."""
    records = [record for _, _, record in ordered(steps)]
    ingress = next((r for r in records if r.get("kind") == "ingress"), None)
    if ingress is not None and ingress.get("status") == "refused":
        return f"refused ({ingress.get('code')}): {ingress.get('reason', '')}"
    if ingress is not None and ingress.get("status") not in ("accepted", None):
        return f"{ingress.get('status')}: {ingress.get('reason', '')}"
    routed = [r for r in records if r.get("kind") == "router"]
    runs = [rule["run"] for r in routed for rule in r.get("rules", []) if rule.get("run")]
    runs += [r["run"] for r in records if r.get("kind") == "clock" and r.get("run") and r["run"] not in runs]
    ends = "; ".join(f"run {r['run'][:8]}… {r['status']}: {r['reason']}" for r in records if r.get("kind") == "run")
    if runs:
        line = f"started run {runs[0][:8]}…" + (f" and {len(runs) - 1} more" if len(runs) > 1 else "")
        return f"{line}; {ends}" if ends else line
    if ends:  # (its first steps pruned, or a run requested by hand)
        return ends
    if not routed:
        count = len(ingress.get("events", [])) if ingress else 0
        return f"accepted {count} event{'s' if count != 1 else ''}; not routed yet" if ingress else "no story yet"
    if any(r.get("skip_ci") for r in routed):
        return "no run: the head commit says [skip ci]"
    return _no_match(routed)


def _no_match(routed: list[dict[str, Any]]) -> str:
    if not any(r.get("rules_weighed") for r in routed):
        return "no rule matched: there are no rules"
    best = None
    for r in routed:
        for rule in r.get("rules", []):
            if rule.get("id") == r.get("closest") and (
                best is None or (rule.get("rank") or 0) > (best.get("rank") or 0)
            ):
                best = rule
    if best is None:
        return "no rule matched"
    return f"no rule matched: closest was “{best['sentence']}” ({best['reason']})"


def runs_of(steps: list[tuple[str, datetime, dict[str, Any]]]) -> list[str]:
    """The runs the delivery started, in the order they were requested."""
    found: list[str] = []
    for _, _, record in ordered(steps):
        for run in [rule.get("run") for rule in record.get("rules", [])] + [record.get("run")]:
            if record.get("kind") in ("router", "clock") and run and run not in found:
                found.append(run)
    return found


def summary(delivery_id: str, steps: list[tuple[str, datetime, dict[str, Any]]]) -> dict[str, Any]:
    """One delivery as a line of the Deliveries list: when, what, and its outcome."""
    records = [record for _, _, record in ordered(steps)]
    first: dict[str, Any] = records[0] if records else {}
    routed = next((r["event"] for r in records if r.get("kind") == "router"), None)
    events = first.get("events") or ([routed] if routed else [])
    head = events[0] if events else {}
    return {
        "id": delivery_id,
        "at": min((at for _, at, _ in steps), default=None),
        "status": first.get("status", first.get("kind", "")),
        "host": first.get("host", ""),
        "event": first.get("event", head.get("key", "")) if first.get("kind") != "clock" else "schedule",
        "repository": first.get("repository") or head.get("repository", ""),
        "ref": head.get("ref", first.get("branch", "")),
        "commit": head.get("commit", ""),
        "runs": runs_of(steps),
        "outcome": outcome(steps),
        "replayable": bool(first.get("replay")),
    }


def told(delivery_id: str, steps: list[tuple[str, datetime, dict[str, Any]]]) -> list[str]:
    """The whole story as lines of text (`tasuki deliveries show ID`)."""
    lines = [f"delivery {delivery_id}: {outcome(steps)}"]
    for _, at, record in ordered(steps):
        kind = record.get("kind", "")
        head = f"  {at:%Y-%m-%d %H:%M:%S}  {kind}"
        if kind == "ingress":
            code = f" ({record['code']})" if record.get("code") else ""
            what = f" {record.get('host', '')} {record.get('event', '')} of {record.get('repository', '')}"
            reason = f": {record['reason']}" if record.get("reason") else ""
            lines.append(f"{head}: {record.get('status')}{code}{what if record.get('host') else ''}{reason}")
            lines += [
                f"      {e['key']} {e['ref']} {e['commit'][:12]} {e['message']}" for e in record.get("events", [])
            ]
            if record.get("replay_of"):
                lines.append(f"      a replay of {record['replay_of']}")
        elif kind == "clock":
            lines.append(f"{head}: fired at {record['fired_at']}: {record['sentence']}; run {record['run']}")
        elif kind == "router":
            event = record.get("event", {})
            lines.append(
                f"{head}: {event.get('key')} {event.get('ref')} {event.get('commit', '')[:12]}: "
                f"{record.get('rules_weighed', 0)} rule(s) weighed" + ("; [skip ci]" if record.get("skip_ci") else "")
            )
            for rule in record.get("rules", []):
                verdict = f"matched: run {rule['run']}" if rule["matched"] else f"no: {rule['reason']}"
                mark = " (closest)" if rule["id"] == record.get("closest") else ""
                lines.append(f"      {rule['id']}  {rule['sentence']}  -> {verdict}{mark}")
        elif kind == "run":
            lines.append(f"{head}: run {record['run']} {record['status']}: {record['reason']}")
        else:
            lines.append(f"{head}: {record.get('reason', '')}")
    return lines
