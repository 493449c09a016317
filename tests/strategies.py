"""Hypothesis strategies for webhook deliveries: arbitrary JSON, and fixtures with any part replaced."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)

# A path into a payload: at each level, which key or item (modulo how many there are).
paths = st.lists(st.integers(min_value=0, max_value=60), max_size=6)

header_names = st.sampled_from(
    [
        "Content-Type",
        "X-Event-Key",
        "X-GitHub-Event",
        "X-Gitlab-Event",
        "X-Hub-Signature",
        "X-Hub-Signature-256",
        "X-Gitlab-Token",
        "X-Request-UUID",
        "X-Hook-UUID",
        "X-GitHub-Delivery",
        "Idempotency-Key",
        "X-Gitlab-Event-UUID",
        "X-Other",
    ]
)

event_names = st.sampled_from(
    [
        "repo:push",
        "pullrequest:created",
        "pullrequest:fulfilled",
        "push",
        "pull_request",
        "ping",
        "Push Hook",
        "Tag Push Hook",
        "Merge Request Hook",
        "System Hook",
    ]
) | st.text(max_size=20)


def replaced(value: Any, path: list[int], replacement: Any) -> Any:
    """`value` with the node that `path` leads to replaced (the path stops where the JSON does)."""
    if not path or not isinstance(value, dict | list) or not value:
        return replacement
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = replaced(value[key], path[1:], replacement)
    return copy
