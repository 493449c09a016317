"""Web: the page people use and the JSON API behind it (`shared/web/`), as one function.

Reads runs, jobs, logs, rules, repositories and dead letters from the store and RabbitMQ;
cancel and re-run go to the dispatcher as messages on tasuki.runs.
"""

from __future__ import annotations

import functions_framework

from tasuki.shared.runtime import runtime
from tasuki.shared.web import site


@functions_framework.http
def web(request):
    return site.handle(request, runtime())
