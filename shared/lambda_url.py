"""Serve a function behind an AWS Lambda Function URL: the same app, through apig-wsgi.

A Function URL invokes Lambda with an event in API Gateway's payload format 2.0. apig-wsgi
(`make_lambda_handler`) turns it into a WSGI request for the very app functions-framework builds
for the target (`create_app(target, source)`, what `functions-framework --target` serves), and
the app's answer back into the Function URL's response (binary bodies base64-encoded). So a
function answers the same on Lambda as on Cloud Functions, Cloud Run or `make local`.

The app is built on the first invocation, not at import: a bundle's main.py is imported by
functions-framework too, where nothing of Lambda is wanted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def handler(target: str, source: str) -> LambdaHandler:
    """A Lambda handler serving functions-framework target `target` defined in file `source`."""
    built: list[LambdaHandler] = []
    lock = threading.Lock()

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not built:
            with lock:
                if not built:
                    from apig_wsgi import make_lambda_handler
                    from functions_framework import create_app

                    built.append(make_lambda_handler(create_app(target, source), binary_support=True))
        return built[0](event, context)

    return lambda_handler
