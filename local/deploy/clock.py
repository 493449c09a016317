"""The clock on a FaaS platform: a Cloud Scheduler job per subscription that takes the clock's
message (type `tick`), pushing it to that subscription's function once a minute.

Under `make local` and wherever a bridge runs, the bridge publishes the clock's messages and
pushes them like any other. On Google Cloud, Cloud Scheduler can deliver them straight to the
function as well, with a Google-signed OIDC token (TASUKI_PUSH_OIDC_*), so the clock keeps
going while no bridge does; a second tick changes nothing the first did. Derived from the flow
(shared/topics.py, shared/messages.py): no subscription takes a `tick`, no job.

The same tick is the clock of schedule rules (issue 16): the dispatcher claims each minute once in
the store (`Store.claim_minutes`), however many bridges and Cloud Scheduler jobs tick, so its
once-a-minute schedule here is all schedules need.
"""

from __future__ import annotations

from typing import Any

from tasuki.shared import codec, push, topics
from tasuki.shared.messages import MODELS

CLOCK = "tick"
EVERY_MINUTE = "* * * * *"  # Cloud Scheduler's finest schedule


def schedules(project: str = "tasuki") -> list[dict[str, Any]]:
    """One Cloud Scheduler job per subscription that takes the clock's message: its name, the
    function it pushes to, its schedule, and the push request it sends (JSON)."""
    model = MODELS.get(CLOCK)
    if model is None:
        return []
    jobs = []
    for subscription in topics.SUBSCRIPTIONS:
        if CLOCK not in subscription.keys:
            continue
        message = model()
        request = push.envelope(
            codec.encode(message),
            attributes={**message.attributes(), "type": CLOCK},
            message_id=f"clock-{subscription.name}",
            publish_ms=0,
            subscription=push.subscription_path(project, subscription.name),
            delivery_attempt=1,
        )
        jobs.append(
            {
                "name": f"clock-{subscription.name}",
                "function": subscription.endpoint,
                "schedule": EVERY_MINUTE,
                "body": request,
            }
        )
    return jobs
