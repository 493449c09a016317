"""The JSON API under /api: everything the page does, for scripts. Described in `openapi.py`."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from tasuki.shared import stories
from tasuki.shared.errors import ActionError
from tasuki.shared.flowfile import group_of
from tasuki.shared.messages import JOB_FINAL, RUN_FINAL
from tasuki.shared.runtime import Runtime
from tasuki.shared.store import JobRecord, RunRecord
from tasuki.shared.text import clip
from tasuki.shared.web import actions, badges, openapi, paging


def reply(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def run_json(run: RunRecord) -> dict[str, Any]:
    event = run.event
    return {
        "id": run.id,
        "status": run.status,
        "summary": run.message,
        "repository": run.repository,
        "host": event.host,
        "event": event.kind,
        "ref": event.ref.model_dump() if event.ref else None,
        "pull_request": event.pull_request.model_dump() if event.pull_request else None,
        "commit": run.commit,
        "message": event.head_message,
        "actor": event.actor,
        "rule_id": run.rule_id,
        "delivery": event.delivery_id,
        "params": event.params,
        "rerun_of": run.rerun_of or None,
        "kept": run.kept,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration": run.duration,
    }


def job_json(job: JobRecord) -> dict[str, Any]:
    return {
        "name": job.name,
        "status": job.status,
        "exit_code": job.exit_code,
        "needs": job.needs,
        "reason": job.reason,
        "message": job.message,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "image": job.spec.container_image if job.spec else None,
        "run": job.spec.run if job.spec else None,
        "group": group_of(job.name),
        "attempt": job.attempt,
        "attempts": [
            a.model_dump(include={"attempt", "status", "exit_code", "message", "started_at", "finished_at"})
            for a in job.attempts
        ],
        "flaky": job.flaky,
    }


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise ActionError(400, f"expected a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise ActionError(400, "expected a JSON object")
    return body


def runs(rt: Runtime, request: Request) -> Response:
    size = paging.limit(request)
    found = rt.store.list_runs(
        repository=request.args.get("repo") or None,
        status=request.args.get("status") or None,
        limit=size + 1,
        before=paging.before(request),
    )
    records, after = paging.page(found, size, paging.of_run)
    return reply({"runs": [run_json(r) for r in records], "next": after})


def run(rt: Runtime, request: Request, run_id: str) -> Response:
    record = actions.get_run(rt, run_id)
    return reply(
        {
            "run": run_json(record),
            "jobs": [job_json(j) for j in rt.store.get_jobs(run_id)],
            "notes": [{"source": s, "message": m} for s, m in rt.store.get_notes(run_id)],
        }
    )


# A page of a job's log: at most this many chunks, and no more bytes than this (but at least one
# chunk, whatever its size: the store keeps none larger than a job.log message).
LOG_PAGE_CHUNKS, LOG_PAGE_MAX_CHUNKS = 64, 256
LOG_PAGE_BYTES = 4 * 1024 * 1024


def log(rt: Runtime, request: Request, run_id: str, job: str) -> Response:
    """One page of the job's log (the current attempt's, or `attempt`'s) after chunk `after`;
    `next_after` is where the next page starts and `more` says whether one is stored already
    (`done`: the log is whole)."""
    record = actions.get_run(rt, run_id)
    after = _number(request, "after", -1, -1, 10_000_000, "a chunk number")
    page = _number(request, "limit", LOG_PAGE_CHUNKS, 1, LOG_PAGE_MAX_CHUNKS, "a number of chunks")
    wanted = _number(request, "attempt", 1, 1, 10_000, "an attempt number") if request.args.get("attempt") else None
    jobs = {j.name: j for j in rt.store.get_jobs(run_id)}
    if job not in jobs:
        raise ActionError(404, f"run {run_id} has no job {job!r}")
    current = jobs[job]
    # The current attempt's log, or an earlier one's (a retry, a lost executor): each has its own.
    earlier = {a.attempt: a for a in current.attempts}
    attempt = current.attempt if wanted is None else wanted
    if attempt != current.attempt and attempt not in earlier:
        raise ActionError(
            404, f"job {job!r} of run {run_id} has no attempt {attempt} (attempts: 1 to {current.attempt})"
        )
    chunks = rt.store.read_log(run_id, job, after, attempt=attempt, limit=page + 1)
    more = len(chunks) > page
    chunks, size = chunks[:page], 0
    for n, (_, data) in enumerate(chunks):
        size += len(data)
        if n and size > LOG_PAGE_BYTES:
            chunks, more = chunks[:n], True
            break
    last = chunks[-1][0] if chunks else after
    if attempt in earlier and (attempt != current.attempt or current.status in JOB_FINAL):
        over, announced = True, earlier[attempt].log_chunks
    else:
        over, announced = record.status in RUN_FINAL or current.status in JOB_FINAL, current.log_chunks
    # Done once the attempt is over and every chunk its executor announced is stored (or the
    # store took no more of it: the log passed its limit).
    done = (
        over
        and not more
        and (
            announced is None
            or last + 1 >= announced
            or rt.store.log_bytes(run_id, job, attempt) >= rt.settings.job_log_limit_bytes
        )
    )
    return reply(
        {
            "chunks": [{"seq": seq, "text": data.decode("utf-8", "replace")} for seq, data in chunks],
            "attempt": attempt,
            "next_after": last,
            "more": more,
            "done": done,
        }
    )


def _number(request: Request, name: str, default: int, low: int, high: int, what: str) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ActionError(400, f"{name} must be {what} from {low} to {high}")
    return value


def cancel(rt: Runtime, request: Request, run_id: str) -> Response:
    actions.cancel(rt, run_id)
    return reply({"run_id": run_id, "status": "cancelling"}, 202)


def approve(rt: Runtime, request: Request, run_id: str) -> Response:
    actions.approve(rt, run_id, by="the API")
    return reply({"run_id": run_id, "status": "approved"}, 202)


def rerun(rt: Runtime, request: Request, run_id: str) -> Response:
    failed = request.args.get("failed", "") in ("1", "true", "yes")
    return reply({"run_id": actions.rerun(rt, run_id, failed=failed), "rerun_of": run_id, "failed_only": failed}, 202)


def start_run(rt: Runtime, request: Request) -> Response:
    """A manual run: {"repository", "branch" or "tag", "params"}; one run per manual rule."""
    body = _json_body(request)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ActionError(400, "params must be a JSON object of name: value")
    names = {key: body.get(key) for key in ("repository", "branch", "tag")}
    for key, value in names.items():
        if value is not None and not isinstance(value, str):
            raise ActionError(400, f"{key} must be text")
    run_ids = actions.start_run(
        rt,
        names["repository"] or "",
        branch=names["branch"] or "",
        tag=names["tag"] or "",
        params=params,
        actor="the API (TASUKI_WEB_TOKEN)",
    )
    return reply({"runs": run_ids}, 202)


def repositories(rt: Runtime, request: Request) -> Response:
    return reply(
        {
            "webhook_url": rt.settings.public_webhook_url,
            "repositories": [
                {
                    "full_name": name,
                    "clone_url": config.clone_url,
                    "secret": bool(config.secret),
                    "token": bool(config.token or config.app_password),
                    "trust_forks": config.trust_forks,
                    "from": origin,
                }
                for name, (config, origin) in rt.registry.all().items()
            ],
        }
    )


def register_repository(rt: Runtime, request: Request) -> Response:
    body = _json_body(request)
    unknown = sorted(set(body) - {"full_name", *actions.REPOSITORY_FIELDS})
    if unknown:
        taken = ", ".join(("full_name", *actions.REPOSITORY_FIELDS))
        raise ActionError(
            400, f"unknown field(s) {', '.join(clip(u, 40) for u in unknown[:5])}; a repository takes {taken}"
        )
    trust_forks = body.get("trust_forks", False)
    if not isinstance(trust_forks, bool):
        raise ActionError(400, "trust_forks must be true or false")
    name = actions.register_repository(
        rt,
        str(body.get("full_name", "")),
        str(body.get("clone_url", "")),
        str(body.get("secret", "")),
        str(body.get("token", "")),
        username=str(body.get("username", "")),
        app_password=str(body.get("app_password", "")),
        trust_forks=trust_forks,
    )
    return reply({"full_name": name, "webhook_url": rt.settings.public_webhook_url}, 201)


def remove_repository(rt: Runtime, request: Request, full_name: str) -> Response:
    actions.remove_repository(rt, full_name)
    return Response(status=204)


def spec(rt: Runtime, request: Request) -> Response:
    return reply(openapi.document(rt.settings.web_url))


def rule_json(rule: Any, file_ids: set[str]) -> dict[str, Any]:
    return {**rule.model_dump(), "sentence": rule.sentence(), "from_file": rule.id in file_ids}


def rules(rt: Runtime, request: Request) -> Response:
    file_ids = actions.file_rule_ids(rt)
    return reply({"rules": [rule_json(r, file_ids) for r in rt.store.list_rules()]})


def create_rule(rt: Runtime, request: Request) -> Response:
    rule = actions.create_rule(rt, _json_body(request))
    return reply(rule_json(rule, set()), 201)


def change_rule(rt: Runtime, request: Request, rule_id: str, change: str) -> Response:
    if change == "delete":
        actions.delete_rule(rt, rule_id)
        return Response(status=204)
    rule = actions.set_rule_enabled(rt, rule_id, change == "enable")
    return reply(rule_json(rule, actions.file_rule_ids(rt)))


def letter_json(letter: Any, with_body: bool = False) -> dict[str, Any]:
    data = {
        "id": letter.id,
        "message_id": letter.message_id,
        "type": letter.type,
        "subscription": letter.subscription,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "dead_lettered_at": letter.dead_lettered_at,
        "exchange": letter.exchange,
        "routing_key": letter.routing_key,
        "attributes": letter.attributes,
    }
    if with_body:
        data["body"] = actions.letter_body(letter)
    return data


def deadletters(rt: Runtime, request: Request) -> Response:
    return reply({"deadletters": [letter_json(x) for x in actions.letters(rt)]})


def deadletter(rt: Runtime, request: Request, letter_id: str) -> Response:
    return reply(letter_json(actions.letter(rt, letter_id), with_body=True))


def replay(rt: Runtime, request: Request, letter_id: str | None = None) -> Response:
    return reply({"replayed": actions.replay(rt, letter_id)})


def deliveries(rt: Runtime, request: Request) -> Response:
    size = paging.limit(request)
    found = rt.store.stories(limit=size + 1, before=paging.before(request))
    rows, after = paging.page(
        [stories.summary(delivery_id, steps) for delivery_id, steps in found], size, paging.of_delivery
    )
    return reply({"deliveries": list(rows), "next": after})


def step_json(step: str, at: Any, record: dict[str, Any]) -> dict[str, Any]:
    """A step as the API shows it: the record without the events kept for replay."""
    return {"step": step, "at": at, **{k: v for k, v in record.items() if k != "replay"}}


def delivery(rt: Runtime, request: Request, delivery_id: str) -> Response:
    steps = actions.delivery(rt, delivery_id)
    return reply({"delivery": stories.summary(delivery_id, steps), "steps": [step_json(*s) for s in steps]})


def replay_delivery(rt: Runtime, request: Request, delivery_id: str) -> Response:
    return reply({"delivery": actions.replay_delivery(rt, delivery_id), "replay_of": delivery_id}, 202)


def badge(rt: Runtime, request: Request, name: str) -> Response:
    """The latest run of a repository's branch as an SVG badge (GET /badge/<repo>.svg?branch=)."""
    if not name.endswith(".svg"):
        raise ActionError(404, f"a badge is /badge/<repository>.svg, found /badge/{name}")
    found = rt.registry.find(name.removesuffix(".svg"))
    runs = rt.store.list_runs(repository=found[0], limit=200) if found else []
    run = badges.latest(runs, request.args.get("branch", ""))
    response = Response(badges.svg(run.status if run else "unknown"), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-cache, max-age=0"
    return response


# --- job secrets (issue 14): names only out, values only in ------------------------------------------


def secrets(rt: Runtime, request: Request, full_name: str | None = None) -> Response:
    return reply({"secrets": actions.secret_names(rt, full_name)})


def set_secret(rt: Runtime, request: Request, name: str, full_name: str | None = None) -> Response:
    value = _json_body(request).get("value")
    if not isinstance(value, str):
        raise ActionError(400, 'expected {"value": "..."}')
    actions.set_secret(rt, full_name, name, value)
    return Response(status=204)


def delete_secret(rt: Runtime, request: Request, name: str, full_name: str | None = None) -> Response:
    actions.delete_secret(rt, full_name, name)
    return Response(status=204)
