"""The web function's request path: route -> check access -> view -> response, errors translated.

pages  /runs, /runs/<id>, /rules, /repositories, /repositories/<name>/run, /deliveries, /deliveries/<id>,
       /repositories/<name>/secrets, /secrets, /deadletters, /login
badges /badge/<repo>.svg?branch=main (public with TASUKI_PUBLIC_BADGES)
API    /api/... (JSON; an artifact's download is its bytes), /api/openapi.json
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from tasuki.shared.errors import ActionError, ConfigError, TasukiError
from tasuki.shared.runtime import Runtime
from tasuki.shared.web import access, api, artifacts, pages

log = logging.getLogger("tasuki.web")

ROUTES: list[tuple[str, str, Callable, tuple[str, ...]]] = [
    # (endpoint, path, view, methods)
    ("home", "/", lambda rt, request: redirect("/runs", code=302), ("GET",)),
    ("login", "/login", pages.login, ("GET", "POST")),
    ("logout", "/logout", pages.logout, ("POST",)),
    ("runs", "/runs", pages.runs, ("GET",)),
    ("run", "/runs/<run_id>", pages.run, ("GET",)),
    ("cancel", "/runs/<run_id>/cancel", pages.cancel, ("POST",)),
    ("rerun", "/runs/<run_id>/rerun", pages.rerun, ("POST",)),
    ("approve", "/runs/<run_id>/approve", pages.approve, ("POST",)),
    ("rerun.failed", "/runs/<run_id>/rerun-failed", pages.rerun_failed, ("POST",)),
    ("rules", "/rules", pages.rules, ("GET",)),
    ("rule.create", "/rules", pages.create_rule, ("POST",)),
    ("rule.change", "/rules/<rule_id>/<any(enable, disable, delete):change>", pages.change_rule, ("POST",)),
    ("repositories", "/repositories", pages.repositories, ("GET",)),
    ("register", "/repositories", pages.register_repository, ("POST",)),
    ("unregister", "/repositories/<path:full_name>/delete", pages.remove_repository, ("POST",)),
    ("start.form", "/repositories/<path:full_name>/run", pages.run_form, ("GET",)),
    ("start", "/repositories/<path:full_name>/run", pages.start_run, ("POST",)),
    ("deliveries", "/deliveries", pages.deliveries, ("GET",)),
    ("delivery", "/deliveries/<path:delivery_id>", pages.delivery, ("GET",)),
    ("delivery.replay", "/deliveries/<path:delivery_id>/replay", pages.replay_delivery, ("POST",)),
    ("badge", "/badge/<path:name>", api.badge, ("GET",)),
    ("deadletters", "/deadletters", pages.deadletters, ("GET",)),
    ("deadletter", "/deadletters/<letter_id>", pages.deadletter, ("GET",)),
    ("replay.all", "/deadletters/replay", pages.replay, ("POST",)),
    ("replay", "/deadletters/<letter_id>/replay", pages.replay, ("POST",)),
    ("api.spec", "/api/openapi.json", api.spec, ("GET",)),
    ("api.runs", "/api/runs", api.runs, ("GET",)),
    ("api.start", "/api/runs", api.start_run, ("POST",)),
    ("api.run", "/api/runs/<run_id>", api.run, ("GET",)),
    ("api.log", "/api/runs/<run_id>/jobs/<job>/log", api.log, ("GET",)),
    ("api.artifacts", "/api/runs/<run_id>/artifacts", artifacts.listing, ("GET",)),
    ("api.artifact", "/api/runs/<run_id>/artifacts/<job>/<path:path>", artifacts.download, ("GET",)),
    ("api.cancel", "/api/runs/<run_id>/cancel", api.cancel, ("POST",)),
    ("api.rerun", "/api/runs/<run_id>/rerun", api.rerun, ("POST",)),
    ("api.approve", "/api/runs/<run_id>/approve", api.approve, ("POST",)),
    ("api.rules", "/api/rules", api.rules, ("GET",)),
    ("api.rule.create", "/api/rules", api.create_rule, ("POST",)),
    ("api.rule.change", "/api/rules/<rule_id>/<any(enable, disable):change>", api.change_rule, ("POST",)),
    (
        "api.rule.delete",
        "/api/rules/<rule_id>",
        lambda rt, request, rule_id: api.change_rule(rt, request, rule_id, "delete"),
        ("DELETE",),
    ),
    ("api.deliveries", "/api/deliveries", api.deliveries, ("GET",)),
    ("api.delivery", "/api/deliveries/<path:delivery_id>", api.delivery, ("GET",)),
    ("api.delivery.replay", "/api/deliveries/<path:delivery_id>/replay", api.replay_delivery, ("POST",)),
    ("api.deadletters", "/api/deadletters", api.deadletters, ("GET",)),
    ("api.deadletter", "/api/deadletters/<letter_id>", api.deadletter, ("GET",)),
    ("api.replay.all", "/api/deadletters/replay", api.replay, ("POST",)),
    ("api.replay", "/api/deadletters/<letter_id>/replay", api.replay, ("POST",)),
    ("api.repositories", "/api/repositories", api.repositories, ("GET",)),
    ("api.register", "/api/repositories", api.register_repository, ("POST",)),
    ("api.unregister", "/api/repositories/<path:full_name>", api.remove_repository, ("DELETE",)),
    # job secrets (issue 14): a repository's, and the global ones
    ("secrets", "/repositories/<path:full_name>/secrets", pages.secrets, ("GET",)),
    ("secret.set", "/repositories/<path:full_name>/secrets", pages.set_secret, ("POST",)),
    ("secret.delete", "/repositories/<path:full_name>/secrets/<name>/delete", pages.delete_secret, ("POST",)),
    ("secrets.global", "/secrets", pages.secrets, ("GET",)),
    ("secret.global.set", "/secrets", pages.set_secret, ("POST",)),
    ("secret.global.delete", "/secrets/<name>/delete", pages.delete_secret, ("POST",)),
    ("api.secrets", "/api/repositories/<path:full_name>/secrets", api.secrets, ("GET",)),
    ("api.secret.set", "/api/repositories/<path:full_name>/secrets/<name>", api.set_secret, ("PUT",)),
    ("api.secret.delete", "/api/repositories/<path:full_name>/secrets/<name>", api.delete_secret, ("DELETE",)),
    ("api.secrets.global", "/api/secrets", api.secrets, ("GET",)),
    ("api.secret.global.set", "/api/secrets/<name>", api.set_secret, ("PUT",)),
    ("api.secret.global.delete", "/api/secrets/<name>", api.delete_secret, ("DELETE",)),
]
VIEWS = {endpoint: view for endpoint, _, view, _ in ROUTES}
URLS = Map([Rule(path, endpoint=endpoint, methods=list(methods)) for endpoint, path, _, methods in ROUTES])
OPEN = {"login", "logout", "api.spec"}  # reachable without signing in


def is_open(settings, endpoint: str) -> bool:
    """Reachable without signing in: the sign-in itself, the API's description, and the status
    badges when the operator made them public (TASUKI_PUBLIC_BADGES)."""
    return endpoint in OPEN or (endpoint == "badge" and settings.public_badges)


def handle(request: Request, rt: Runtime) -> Response:
    """1. a name this Tasuki answers to; 2. a route; 3. signed in (or open); 4. a change comes
    from the site itself (Origin, JSON for the API, the form's CSRF token); 5. the view."""
    is_api = request.path.startswith("/api/")
    try:
        access.check_configuration(rt.settings)
        refused = access.host_refusal(rt.settings, request.host)
        if refused:
            return _error(rt, request, is_api, refused.status, "Refused", refused.message)
        endpoint, args = URLS.bind_to_environ(request.environ).match()
        if not is_open(rt.settings, endpoint) and not access.allowed(
            rt.settings, request.headers, request.cookies, rt.store.session_ended
        ):
            if is_api:
                return api.reply({"error": "sign in: send Authorization: Bearer <TASUKI_WEB_TOKEN>"}, 401)
            return pages.login_redirect(request)
        bearer = access.bearer_ok(rt.settings, request.headers)
        refused = access.cross_site_refusal(rt.settings, request, api=is_api, bearer=bearer)
        if refused:
            return _error(rt, request, is_api, refused.status, "Refused", refused.message)
        stale = request.method == "POST" and not is_api and endpoint != "login"
        if stale and not access.csrf_ok(rt.signing_key, request.form.get("csrf", "")):
            return _error(
                rt,
                request,
                is_api,
                403,
                "Forbidden",
                "the form is stale or from another site; reload the page and try again",
            )
        return VIEWS[endpoint](rt, request, **args)
    except TasukiError as exc:
        return _failed(rt, request, is_api, exc)
    except NotFound:
        return _error(rt, request, is_api, 404, "Not found", f"nothing at {request.path}")
    except MethodNotAllowed:
        return _error(
            rt, request, is_api, 405, "Method not allowed", f"{request.method} is not allowed on {request.path}"
        )
    except HTTPException as exc:
        return _error(rt, request, is_api, exc.code or 400, exc.name, exc.description or "")


def _failed(rt: Runtime, request: Request, is_api: bool, exc: TasukiError) -> Response:
    """A Tasuki error, answered with its own `http_status` (`shared/errors.py`). An action the
    page's form asked for and that cannot be done goes back to the page with the reason."""
    code = exc.http_status
    if isinstance(exc, ActionError):
        if is_api or request.method == "GET":
            return _error(rt, request, is_api, code, "Not possible", str(exc))
        return pages.back(request.referrer or "/runs", str(exc), "error")
    if code >= 500:
        log.error("web: %s", exc)
    if code == 503:
        return _error(rt, request, is_api, code, "Unavailable", f"{exc}; try again in a moment")
    if isinstance(exc, ConfigError):
        return _error(rt, request, is_api, code, "Misconfigured", str(exc))
    return _error(rt, request, is_api, code, "Refused" if code < 500 else "Failed", str(exc))


def _error(rt: Runtime, request: Request, is_api: bool, code: int, title: str, message: str) -> Response:
    if is_api:
        return api.reply({"error": message}, code)
    try:
        return pages.error(rt, request, code, title, message)
    except TasukiError:  # the page itself cannot render (e.g. no store): plain text still helps
        return Response(f"{code} {title}: {message}\n", status=code, mimetype="text/plain")
