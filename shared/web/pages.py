"""The HTML pages: each view reads what it shows, renders a template, and never writes except
through `actions`. Forms post back and redirect (post/redirect/get) with a one-line flash."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from tasuki.shared import manual, reruns, stories
from tasuki.shared.hosts import HOSTS
from tasuki.shared.messages import RUN_FINAL
from tasuki.shared.runtime import Runtime
from tasuki.shared.scheduler import JobState
from tasuki.shared.web import access, actions, artifacts, graph, paging, present

env = Environment(
    loader=PackageLoader("tasuki.shared.web", "templates"),
    autoescape=select_autoescape(),
    trim_blocks=True,
    lstrip_blocks=True,
)
RUN_STATUSES = ("approval", "queued", "running", "success", "failure", "cancelled", "error")
FLASH = "tasuki_flash"
PAGE = 100  # runs or deliveries on a page; `Older` leads to the next
# What the rule form offers for a schedule (any cron expression is taken too: shared/schedules.py).
SCHEDULE_EXAMPLES = ("hourly", "hourly at :30", "daily at 02:00", "weekly on monday at 06:00", "0 2 * * 1-5")


def render(rt: Runtime, request: Request, template: str, status: int = 200, **context: Any) -> Response:
    flash = request.cookies.get(FLASH, "")
    kind, _, text = flash.partition(":")
    values = {
        "csrf": access.csrf_token(rt.signing_key),
        "flash": text,
        "flash_kind": kind,
        "signed_in": bool(rt.settings.web_token)
        and access.session(rt.settings, request.cookies.get(access.COOKIE, "")),
    }
    values.update(context)
    html = env.get_template(template).render(**values)
    response = Response(html, status=status, mimetype="text/html")
    if flash:
        response.delete_cookie(FLASH)
    return response


def back(to: str, message: str, kind: str = "ok") -> Response:
    response = redirect(to, code=303)
    response.set_cookie(FLASH, f"{kind}:{message}", max_age=30, httponly=True, samesite="Strict")
    return response


def runs(rt: Runtime, request: Request) -> Response:
    repo = request.args.get("repo") or None
    status = request.args.get("status") or None
    before = paging.before(request)
    found = rt.store.list_runs(repository=repo, status=status, limit=PAGE + 1, before=before)
    records, after = paging.page(found, PAGE, paging.of_run)
    context: dict[str, Any] = {
        "runs": [present.run_view(r) for r in records],
        "live": any(r.status not in RUN_FINAL for r in records),
        "repo": repo,
        "status": status,
        "paged": before is not None,
        "older": _query(repo=repo, status=status, before=after) if after else None,
        "newest": _query(repo=repo, status=status),
    }
    if request.args.get("fragment"):
        return render(rt, request, "runs_table.html", **context)
    names = sorted({r.repository for r in rt.store.list_runs(limit=500)} | set(rt.registry.all()))
    return render(rt, request, "runs.html", section="Runs", repositories=names, statuses=RUN_STATUSES, **context)


def run(rt: Runtime, request: Request, run_id: str) -> Response:
    record = actions.get_run(rt, run_id)
    jobs = rt.store.get_jobs(run_id)
    context: dict[str, Any] = {
        "run": present.run_view(record),
        "jobs": present.jobs_view(jobs),
        "graph": graph.layout({j.name: (j.status, j.needs) for j in jobs}),
        "notes": rt.store.get_notes(run_id),
        "artifacts": artifacts.of_jobs(jobs),
    }
    if request.args.get("fragment"):
        return render(rt, request, "run_body.html", **context)
    first = next((j.name for j in jobs if j.status in ("failure", "error", "timeout")), jobs[0].name if jobs else "")
    again = reruns.again({j.name: JobState(j.status, tuple(j.needs)) for j in jobs})
    return render(rt, request, "run.html", section="Runs", selected=first, failed_jobs=again, **context)


def cancel(rt: Runtime, request: Request, run_id: str) -> Response:
    actions.cancel(rt, run_id)
    return back(f"/runs/{run_id}", "Cancelling: running jobs are being stopped.")


def approve(rt: Runtime, request: Request, run_id: str) -> Response:
    actions.approve(rt, run_id, by="the web page")
    return back(f"/runs/{run_id}", "Approved: the run starts.")


def recorded(rt: Runtime, run_id: str, wait: float = 5.0) -> None:
    """Wait a moment (at most `wait` seconds) for the dispatcher to record a run just requested,
    so that the page the form leads to shows it rather than "there is no run"."""
    deadline = time.monotonic() + wait
    while rt.store.get_run(run_id) is None and time.monotonic() < deadline:
        time.sleep(0.1)


def rerun(rt: Runtime, request: Request, run_id: str) -> Response:
    new_id = actions.rerun(rt, run_id)
    recorded(rt, new_id)
    return back(f"/runs/{new_id}", f"Re-running as run {new_id}.")


def rerun_failed(rt: Runtime, request: Request, run_id: str) -> Response:
    new_id = actions.rerun(rt, run_id, failed=True)
    recorded(rt, new_id)
    return back(f"/runs/{new_id}", f"Re-running the failed jobs of run {run_id} as run {new_id}.")


def run_form(rt: Runtime, request: Request, full_name: str) -> Response:
    form = actions.run_form(rt, full_name)
    return render(rt, request, "start.html", section="Repositories", **form)


def start_run(rt: Runtime, request: Request, full_name: str) -> Response:
    form = request.form
    given = {key.removeprefix("param."): value for key, value in form.items() if key.startswith("param.")}
    for line in form.get("params_text", "").splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            given[name.strip()] = value.strip()
    name = form.get("ref", "").strip()
    kind = form.get("kind", "branch")
    run_ids = actions.start_run(
        rt,
        full_name,
        branch=name if kind == "branch" else "",
        tag=name if kind == "tag" else "",
        params=given,
        actor="the web page",
    )
    recorded(rt, run_ids[0])
    where = f"/runs/{run_ids[0]}" if len(run_ids) == 1 else f"/runs?repo={quote(full_name)}"
    return back(where, f"Started {len(run_ids)} run{'s' if len(run_ids) != 1 else ''} of {full_name} {kind} {name}.")


def repositories(rt: Runtime, request: Request) -> Response:
    rules = rt.store.list_rules()
    return render(
        rt,
        request,
        "repositories.html",
        section="Repositories",
        repositories=rt.registry.all(),
        startable={name for name in rt.registry.all() if manual.manual_rules(rules, name)},
        webhook_url=rt.settings.public_webhook_url,
    )


def register_repository(rt: Runtime, request: Request) -> Response:
    form = request.form
    name = actions.register_repository(
        rt,
        form.get("full_name", ""),
        form.get("clone_url", ""),
        form.get("secret", ""),
        form.get("token", ""),
        username=form.get("username", ""),
        app_password=form.get("app_password", ""),
        trust_forks=form.get("trust_forks") == "true",
    )
    return back("/repositories", f"Registered {name}. Point its webhook at {rt.settings.public_webhook_url}")


def remove_repository(rt: Runtime, request: Request, full_name: str) -> Response:
    actions.remove_repository(rt, full_name)
    return back("/repositories", f"Removed {full_name}.")


# --- job secrets (issue 14): a repository's, or (full_name None) the global ones ---------------------


def _secrets_page(full_name: str | None) -> str:
    return f"/repositories/{full_name}/secrets" if full_name else "/secrets"


def secrets(rt: Runtime, request: Request, full_name: str | None = None) -> Response:
    return render(
        rt,
        request,
        "secrets.html",
        section="Repositories",
        repository=full_name,
        names=actions.secret_names(rt, full_name),
        action=_secrets_page(full_name),
    )


def set_secret(rt: Runtime, request: Request, full_name: str | None = None) -> Response:
    name = request.form.get("name", "").strip()
    actions.set_secret(rt, full_name, name, request.form.get("value", ""))
    return back(_secrets_page(full_name), f"Set {name}. Jobs that list it get it from their next run.")


def delete_secret(rt: Runtime, request: Request, name: str, full_name: str | None = None) -> Response:
    actions.delete_secret(rt, full_name, name)
    return back(_secrets_page(full_name), f"Deleted {name}.")


def login(rt: Runtime, request: Request) -> Response:
    target = access.safe_next(request.values.get("next"))
    if request.method == "POST":
        if access.token_matches(rt.settings, request.form.get("token", "")):
            response = redirect(target, code=303)
            response.set_cookie(
                access.COOKIE,
                access.new_session(rt.settings),
                httponly=True,
                samesite="Strict",
                secure=access.scheme(rt.settings, request) == "https" or rt.settings.web_url.startswith("https://"),
                max_age=rt.settings.session_hours * 3600,
            )
            return response
        return render(
            rt, request, "login.html", status=401, next=target, flash="That token is not right.", flash_kind="error"
        )
    return render(rt, request, "login.html", next=target)


def logout(rt: Runtime, request: Request) -> Response:
    """Sign out: the session ends here (the store remembers it until it would have expired), and
    the browser forgets its cookie."""
    found = access.session(rt.settings, request.cookies.get(access.COOKIE, ""))
    if found is not None:
        rt.store.end_session(*found)
    response = redirect("/login" if rt.settings.web_token else "/", code=303)
    response.delete_cookie(access.COOKIE, httponly=True, samesite="Strict")
    return response


def login_redirect(request: Request) -> Response:
    return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}", code=303)


def error(rt: Runtime, request: Request, code: int, title: str, message: str) -> Response:
    return render(rt, request, "error.html", status=code, code=code, title=title, message=message)


def _rule_view(rt: Runtime, rule: Any, file_ids: set[str]) -> dict[str, Any]:
    sentence = rule.sentence()
    return {
        "id": rule.id,
        "sentence": sentence[:1].upper() + sentence[1:],
        "enabled": rule.enabled,
        "from_file": rule.id in file_ids,
    }


def rules(rt: Runtime, request: Request) -> Response:
    file_ids = actions.file_rule_ids(rt)
    return render(
        rt,
        request,
        "rules.html",
        section="Rules",
        rules=[_rule_view(rt, r, file_ids) for r in rt.store.list_rules()],
        repositories=sorted(rt.registry.all()),
        hosts=[(host.name, host.title) for host in HOSTS.values()],
        phrases=SCHEDULE_EXAMPLES,
    )


def create_rule(rt: Runtime, request: Request) -> Response:
    form: dict[str, Any] = request.form.to_dict()
    form["cancel_previous"] = form.get("cancel_previous") == "true"
    form["trust_forks"] = form.get("trust_forks") == "true"
    form.pop("csrf", None)
    rule = actions.create_rule(rt, form)
    return back("/rules", f"Created: {rule.sentence()}")


def change_rule(rt: Runtime, request: Request, rule_id: str, change: str) -> Response:
    if change == "delete":
        rule = actions.delete_rule(rt, rule_id)
        note = (
            " It is in the rules file and comes back at the next start." if rule.id in actions.file_rule_ids(rt) else ""
        )
        return back("/rules", f"Deleted: {rule.sentence()}.{note}")
    rule = actions.set_rule_enabled(rt, rule_id, change == "enable")
    return back("/rules", f"{change.capitalize()}d: {rule.sentence()}")


def deliveries(rt: Runtime, request: Request) -> Response:
    before = paging.before(request)
    found = rt.store.stories(limit=PAGE + 1, before=before)
    rows, after = paging.page([stories.summary(d, steps) for d, steps in found], PAGE, paging.of_delivery)
    return render(
        rt,
        request,
        "deliveries.html",
        section="Deliveries",
        deliveries=[{**row, "when": present.when(row["at"])} for row in rows],
        webhook_url=rt.settings.public_webhook_url,
        paged=before is not None,
        older=_query(before=after) if after else None,
    )


def _query(**values: str | None) -> str:
    """`?a=1&b=2` of the values given (none: ``), for links to a listing's pages."""
    given = {k: v for k, v in values.items() if v}
    return "?" + urlencode(given) if given else ""


def delivery(rt: Runtime, request: Request, delivery_id: str) -> Response:
    steps = actions.delivery(rt, delivery_id)
    views = [
        {"name": name, "when": present.when(at), "kind": record.get("kind", ""), "record": record}
        for name, at, record in steps
    ]
    return render(
        rt,
        request,
        "delivery.html",
        section="Deliveries",
        delivery=stories.summary(delivery_id, steps),
        steps=views,
    )


def replay_delivery(rt: Runtime, request: Request, delivery_id: str) -> Response:
    new_id = actions.replay_delivery(rt, delivery_id)
    return back(f"/deliveries/{quote(new_id, safe='')}", f"Replayed delivery {delivery_id} as {new_id}.")


def _letter_view(letter: Any) -> dict[str, Any]:
    return {
        "id": letter.id,
        "message_id": letter.message_id,
        "type": letter.type,
        "subscription": letter.subscription,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "exchange": letter.exchange,
        "routing_key": letter.routing_key,
        "attributes": letter.attributes,
        "when": present.when(letter.dead_lettered_at),
    }


def deadletters(rt: Runtime, request: Request) -> Response:
    return render(
        rt, request, "deadletters.html", section="Dead letters", letters=[_letter_view(x) for x in actions.letters(rt)]
    )


def deadletter(rt: Runtime, request: Request, letter_id: str) -> Response:
    found = actions.letter(rt, letter_id)
    body = json.dumps(actions.letter_body(found), indent=2, default=str)
    return render(rt, request, "deadletter.html", section="Dead letters", letter=_letter_view(found), body=body)


def replay(rt: Runtime, request: Request, letter_id: str | None = None) -> Response:
    done = actions.replay(rt, letter_id)
    return back("/deadletters", f"Replayed {len(done)} dead letter{'s' if len(done) != 1 else ''}.")
