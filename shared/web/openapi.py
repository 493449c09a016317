"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from tasuki.shared.hosts import HOSTS
from tasuki.shared.web import paging

RUN_STATUS = ["approval", "queued", "running", "success", "failure", "cancelled", "error"]
JOB_STATUS = ["pending", "queued", "running", "success", "failure", "error", "timeout", "cancelled", "skipped"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "401": _json(_ref("Error"), "No valid token (Authorization: Bearer <TASUKI_WEB_TOKEN>)"),
    "404": _json(_ref("Error"), "Not found"),
    "503": _json(_ref("Error"), "RabbitMQ or the store is unavailable; retry"),
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **ERRORS}, **extra}


RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
LETTER_ID = {"name": "letter_id", "in": "path", "required": True, "schema": {"type": "string"}}
RULE_ID = {"name": "rule_id", "in": "path", "required": True, "schema": {"type": "string"}}
DELIVERY_ID = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}}
# Listings a page at a time (paging.py)
LIMIT = {
    "name": "limit",
    "in": "query",
    "description": f"At most this many (default {paging.LIMIT_DEFAULT})",
    "schema": {"type": "integer", "minimum": 1, "maximum": paging.LIMIT_MAX},
}
BEFORE = {
    "name": "before",
    "in": "query",
    "description": "The `next` of the page before: this page starts right after its last item",
    "schema": {"type": "string"},
}
NEXT = {"type": ["string", "null"], "description": "The `before` of the next page; null on the last page"}
RULE_FIELDS = {
    "host": {"type": "string", "description": f"{', '.join(HOSTS)} or * (any)"},
    "event": {"type": "string", "enum": ["push", "tag", "pull_request", "manual", "schedule"]},
    "repository": {"type": "string", "description": "full name or glob, e.g. acme/*"},
    "schedule": {
        "type": "string",
        "description": "event schedule: a cron expression (UTC) or hourly, hourly at :MM, daily at HH:MM, "
        "weekly on DAY at HH:MM",
    },
    "branch": {"type": "string"},
    "tag": {"type": "string"},
    "target": {"type": "string"},
    "flow_file": {"type": "string", "default": ".tasuki.yml"},
    "jobs": {"type": "array", "items": {"type": "string"}, "description": "empty: every job"},
    "enabled": {"type": "boolean"},
    "cancel_previous": {"type": "boolean"},
    "concurrency": {"type": ["integer", "null"], "minimum": 1},
}


def document(server: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tasuki API",
            "version": "1",
            "description": "Runs, jobs, logs, trigger rules, repositories and dead letters: all the web page does. "
            "Calls that change something (POST, DELETE) send Content-Type: application/json, or the bearer "
            "token; a call a browser says comes from another site is refused (403).",
        },
        "servers": [{"url": server}],
        "security": [{"token": []}],
        "paths": {
            "/api/runs": {
                "get": _op(
                    "Runs newest first, a page at a time: `next` is the `before` of the page after",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"runs": {"type": "array", "items": _ref("Run")}, "next": NEXT},
                            }
                        ),
                        "400": _json(_ref("Error"), "A limit that is not a number, or a before that is not a next"),
                    },
                    parameters=[
                        {"name": "repo", "in": "query", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": RUN_STATUS}},
                        LIMIT,
                        BEFORE,
                    ],
                ),
                "post": _op(
                    "Start a manual run of a branch or tag with parameters: one run per manual rule that allows it",
                    {
                        "202": _json(
                            {"type": "object", "properties": {"runs": {"type": "array", "items": {"type": "string"}}}},
                            "Requested",
                        ),
                        "400": _json(_ref("Error"), "Not a branch or tag name, or a body that is not one"),
                        "403": _json(_ref("Error"), "No manual rule lets anyone start this repository's branch or tag"),
                        "422": _json(_ref("Error"), "A parameter outside its declared type or choices (named)"),
                    },
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["repository"],
                                    "properties": {
                                        "repository": {"type": "string"},
                                        "branch": {"type": "string", "description": "this or tag"},
                                        "tag": {"type": "string"},
                                        "params": {
                                            "type": "object",
                                            "additionalProperties": {"type": ["string", "number", "boolean"]},
                                        },
                                    },
                                }
                            }
                        },
                    },
                ),
            },
            "/api/runs/{run_id}": {
                "get": _op(
                    "One run with its jobs and notes",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "run": _ref("Run"),
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "notes": {"type": "array", "items": _ref("Note")},
                                },
                            }
                        )
                    },
                    parameters=[RUN_ID],
                )
            },
            "/api/runs/{run_id}/jobs/{job}/log": {
                "get": _op(
                    "A page of a job's log after a chunk number (at most `limit` chunks and about 4 MiB); "
                    "read on from `next_after` while `more` is true",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "chunks": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"seq": {"type": "integer"}, "text": {"type": "string"}},
                                        },
                                    },
                                    "attempt": {"type": "integer"},
                                    "next_after": {"type": "integer"},
                                    "more": {"type": "boolean"},
                                    "done": {"type": "boolean"},
                                },
                            }
                        )
                    },
                    parameters=[
                        RUN_ID,
                        {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "after", "in": "query", "schema": {"type": "integer", "default": -1}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "default": 64, "minimum": 1, "maximum": 256},
                        },
                        {
                            "name": "attempt",
                            "in": "query",
                            "description": "an earlier attempt's log (default: the current attempt's)",
                            "schema": {"type": "integer", "minimum": 1},
                        },
                    ],
                )
            },
            "/api/runs/{run_id}/artifacts": {
                "get": _op(
                    "The files the run's jobs kept (artifacts): job, path, size in bytes, download URL",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "artifacts": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "job": {"type": "string"},
                                                "path": {"type": "string"},
                                                "size": {"type": "integer"},
                                                "url": {"type": "string"},
                                            },
                                        },
                                    }
                                },
                            }
                        )
                    },
                    parameters=[RUN_ID],
                )
            },
            "/api/runs/{run_id}/artifacts/{job}/{path}": {
                "get": _op(
                    "Download one artifact (its bytes, streamed)",
                    {
                        "200": {
                            "description": "The file",
                            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "404": _json(_ref("Error"), "No such artifact"),
                    },
                    parameters=[
                        RUN_ID,
                        {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                )
            },
            "/api/runs/{run_id}/cancel": {
                "post": _op(
                    "Cancel a run: running jobs are stopped",
                    {"202": _json({"type": "object"}, "Cancelling"), "409": _json(_ref("Error"), "Already finished")},
                    parameters=[RUN_ID],
                )
            },
            "/api/runs/{run_id}/approve": {
                "post": _op(
                    "Approve a run that waits for approval (a pull request from a fork): it starts",
                    {
                        "202": _json({"type": "object"}, "Approved"),
                        "409": _json(_ref("Error"), "Not waiting for approval"),
                    },
                    parameters=[RUN_ID],
                )
            },
            "/api/runs/{run_id}/rerun": {
                "post": _op(
                    "Run the same event and rule again; with failed=1, keep the jobs that succeeded and run the "
                    "failed, cancelled and skipped ones and what needs them, at the same commit",
                    {
                        "202": _json({"type": "object", "properties": {"run_id": {"type": "string"}}}, "Requested"),
                        "409": _json(_ref("Error"), "failed=1: the run is not over, or nothing in it failed"),
                    },
                    parameters=[
                        RUN_ID,
                        {"name": "failed", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]}},
                    ],
                )
            },
            "/api/rules": {
                "get": _op(
                    "Trigger rules, each with its sentence",
                    {
                        "200": _json(
                            {"type": "object", "properties": {"rules": {"type": "array", "items": _ref("Rule")}}}
                        )
                    },
                ),
                "post": _op(
                    "Create a rule",
                    {
                        "201": _json(_ref("Rule"), "Created"),
                        "400": _json(_ref("Error"), "Invalid (names the field)"),
                        "409": _json(_ref("Error"), "The same rule exists"),
                    },
                    requestBody={"required": True, "content": {"application/json": {"schema": _ref("RuleIn")}}},
                ),
            },
            "/api/rules/{rule_id}/enable": {
                "post": _op("Enable a rule", {"200": _json(_ref("Rule"))}, parameters=[RULE_ID])
            },
            "/api/rules/{rule_id}/disable": {
                "post": _op("Disable a rule", {"200": _json(_ref("Rule"))}, parameters=[RULE_ID])
            },
            "/api/rules/{rule_id}": {
                "delete": _op("Delete a rule", {"204": {"description": "Deleted"}}, parameters=[RULE_ID])
            },
            "/api/deliveries": {
                "get": _op(
                    "Deliveries newest first, each with one line of outcome, a page at a time",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "deliveries": {"type": "array", "items": _ref("Delivery")},
                                    "next": NEXT,
                                },
                            }
                        ),
                        "400": _json(_ref("Error"), "A limit that is not a number, or a before that is not a next"),
                    },
                    parameters=[LIMIT, BEFORE],
                )
            },
            "/api/deliveries/{delivery_id}": {
                "get": _op(
                    "One delivery's whole story: the ingress, every rule weighed and why it did not match, the runs",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "delivery": _ref("Delivery"),
                                    "steps": {"type": "array", "items": {"type": "object"}},
                                },
                            }
                        ),
                        "404": _json(_ref("Error"), "No such delivery (or pruned)"),
                    },
                    parameters=[DELIVERY_ID],
                )
            },
            "/api/deliveries/{delivery_id}/replay": {
                "post": _op(
                    "Publish the delivery's events again under a new delivery id",
                    {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {"delivery": {"type": "string"}, "replay_of": {"type": "string"}},
                            },
                            "Replayed",
                        ),
                        "409": _json(_ref("Error"), "It made no events (refused, ignored, a schedule's)"),
                    },
                    parameters=[DELIVERY_ID],
                )
            },
            "/api/deadletters": {
                "get": _op(
                    "Dead letters, oldest first (nothing is removed)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"deadletters": {"type": "array", "items": _ref("DeadLetter")}},
                            }
                        )
                    },
                )
            },
            "/api/deadletters/{letter_id}": {
                "get": _op(
                    "One dead letter with its decoded body", {"200": _json(_ref("DeadLetter"))}, parameters=[LETTER_ID]
                )
            },
            "/api/deadletters/{letter_id}/replay": {
                "post": _op(
                    "Replay one dead letter to its subscription",
                    {"200": _json(_ref("Replayed"))},
                    parameters=[LETTER_ID],
                )
            },
            "/api/deadletters/replay": {"post": _op("Replay every dead letter", {"200": _json(_ref("Replayed"))})},
            "/api/repositories": {
                "get": _op("Registered repositories and the webhook URL", {"200": _json({"type": "object"})}),
                "post": _op(
                    "Register a repository",
                    {"201": _json({"type": "object"}, "Registered"), "400": _json(_ref("Error"), "Invalid")},
                    requestBody={"required": True, "content": {"application/json": {"schema": _ref("RepositoryIn")}}},
                ),
            },
            "/api/repositories/{full_name}": {
                "delete": _op(
                    "Remove a repository registered through the API or page",
                    {"204": {"description": "Removed"}},
                    parameters=[{"name": "full_name", "in": "path", "required": True, "schema": {"type": "string"}}],
                )
            },
            **_secrets_paths(),
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "Note": {"type": "object", "properties": {"source": {"type": "string"}, "message": {"type": "string"}}},
                "Run": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": RUN_STATUS},
                        "summary": {"type": "string"},
                        "repository": {"type": "string"},
                        "host": {"type": "string"},
                        "event": {"type": "string", "enum": ["push", "tag", "pull_request", "manual", "schedule"]},
                        "ref": {"type": ["object", "null"]},
                        "pull_request": {"type": ["object", "null"]},
                        "commit": {"type": "string"},
                        "message": {"type": "string"},
                        "actor": {"type": "string"},
                        "rule_id": {"type": "string"},
                        "delivery": {"type": "string", "description": "the delivery it came from"},
                        "params": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "a manual run's parameters (every declared one once planned)",
                        },
                        "rerun_of": {"type": ["string", "null"], "description": "the run this one re-runs"},
                        "kept": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "re-run failed: the jobs kept from the run it re-runs",
                        },
                        "created_at": {"type": "string"},
                        "started_at": {"type": ["string", "null"]},
                        "finished_at": {"type": ["string", "null"]},
                        "duration": {"type": ["number", "null"]},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "status": {"type": "string", "enum": JOB_STATUS},
                        "exit_code": {"type": ["integer", "null"]},
                        "needs": {"type": "array", "items": {"type": "string"}},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                        "image": {"type": ["string", "null"]},
                        "run": {"type": ["string", "null"]},
                        "group": {"type": "string", "description": "the flow file's job (a matrix job's name)"},
                        "attempt": {"type": "integer", "description": "the current attempt (0: not ordered yet)"},
                        "attempts": {
                            "type": "array",
                            "description": "every attempt that is over, oldest first (status lost: its executor stopped)",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "attempt": {"type": "integer"},
                                    "status": {"type": "string"},
                                    "exit_code": {"type": ["integer", "null"]},
                                    "message": {"type": "string"},
                                    "started_at": {"type": ["string", "null"]},
                                    "finished_at": {"type": ["string", "null"]},
                                },
                            },
                        },
                        "flaky": {"type": "boolean", "description": "passed only after a retry"},
                        "started_at": {"type": ["string", "null"]},
                        "finished_at": {"type": ["string", "null"]},
                    },
                },
                "DeadLetter": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "message_id": {"type": "string"},
                        "type": {"type": "string"},
                        "subscription": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "last_error": {"type": "string"},
                        "dead_lettered_at": {"type": ["string", "null"]},
                        "exchange": {"type": "string"},
                        "routing_key": {"type": "string"},
                        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                        "body": {"description": "the message body, decoded from msgpack"},
                    },
                },
                "Delivery": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "at": {"type": ["string", "null"]},
                        "status": {"type": "string", "description": "accepted, refused, ignored, clock"},
                        "host": {"type": "string"},
                        "event": {"type": "string"},
                        "repository": {"type": "string"},
                        "ref": {"type": "string"},
                        "commit": {"type": "string"},
                        "runs": {"type": "array", "items": {"type": "string"}},
                        "outcome": {"type": "string"},
                        "replayable": {"type": "boolean"},
                    },
                },
                "Replayed": {
                    "type": "object",
                    "properties": {"replayed": {"type": "array", "items": {"type": "string"}}},
                },
                "RuleIn": {"type": "object", "required": ["repository"], "properties": RULE_FIELDS},
                "Rule": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "sentence": {"type": "string"},
                        "from_file": {"type": "boolean"},
                        **RULE_FIELDS,
                    },
                },
                "RepositoryIn": {
                    "type": "object",
                    "required": ["full_name"],
                    "additionalProperties": False,
                    "properties": {
                        "full_name": {"type": "string"},
                        "clone_url": {"type": "string"},
                        "secret": {"type": "string", "description": "the webhook's secret"},
                        "token": {"type": "string", "description": "the host's API token (commit statuses)"},
                        "username": {
                            "type": "string",
                            "description": "Bitbucket: with app_password, instead of a token",
                        },
                        "app_password": {"type": "string"},
                        "trust_forks": {"type": "boolean", "description": "fork pull requests run without approval"},
                    },
                },
            },
        },
    }


def _secrets_paths() -> dict[str, Any]:
    """Job secrets (issue 14): names listed, values set and deleted, never read back."""
    repo = {"name": "full_name", "in": "path", "required": True, "schema": {"type": "string"}}
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    }
    names = _json({"type": "object", "properties": {"secrets": {"type": "array", "items": {"type": "string"}}}})
    value = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["value"], "properties": {"value": {"type": "string"}}}
            }
        },
    }
    changed = {
        "204": {"description": "Done"},
        "400": _json(_ref("Error"), "Invalid"),
        "404": _json(_ref("Error"), "Unknown"),
    }
    paths: dict[str, Any] = {}
    for prefix, where, params in (
        ("/api/repositories/{full_name}/secrets", "the repository's", [repo]),
        ("/api/secrets", "global (every repository's jobs may list them)", []),
    ):
        paths[prefix] = {
            "get": _op(f"The names of {where} secrets (never their values)", {"200": names}, parameters=params)
        }
        paths[prefix + "/{name}"] = {
            "put": _op(f"Set one of {where} secrets", changed, parameters=[*params, name], requestBody=value),
            "delete": _op(f"Delete one of {where} secrets", changed, parameters=[*params, name]),
        }
    return paths
