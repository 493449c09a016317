"""The baseline handler of the HTTP benchmarks: reads the body and answers 202, nothing else.

Served by `tasuki.local.cli.serving.serve_function` exactly as Tasuki's functions are, so that a
benchmark's ratio measures the handler's own cost, not the server's."""

from __future__ import annotations

import functions_framework

from tasuki.shared.answers import answer


@functions_framework.http
def baseline(request):
    request.get_data()
    return answer(202, status="accepted")
