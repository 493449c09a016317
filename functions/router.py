"""Router: an Event pushed by the bridge becomes one `run.requested` per matching trigger rule.

Previous hop: functions/ingress.py. Next hop: functions/dispatcher.py (subscription
"dispatcher", ordered by run id). Rules are read from the store (the rules file is loaded into
it at start; `tasuki rules` changes them). Run ids are derived from the event and the rule, so
the same event delivered twice requests the same run, and the dispatcher makes it once. A head
commit saying `[skip ci]` or `[ci skip]` requests nothing.
"""

from __future__ import annotations

import logging

import functions_framework

from tasuki.shared import logs, push, recipes
from tasuki.shared.answers import answer, translated
from tasuki.shared.messages import Event, RunRequested
from tasuki.shared.runtime import runtime

log = logging.getLogger("tasuki.router")


@functions_framework.http
@logs.scoped
@translated
def router(request):
    rt = runtime()
    # 1-2. Authenticate the push, read the envelope, decode the event.
    event = push.receive_message(
        request,
        rt.push_verifier("router"),
        accepts={Event.TYPE: Event},
        limit=rt.settings.max_push_bytes,
    )
    # 3. Which rules does it trigger? (pure; [skip ci] triggers none)
    rules = recipes.match(rt.store.list_rules(), event)
    # 4. Request one run per rule; the run id is the ordering key (RunMessage.ordering_key).
    runs = []
    for rule in rules:
        run_id = recipes.run_id(event, rule)
        rt.publisher.publish(
            RunRequested(
                run_id=run_id,
                rule_id=rule.id,
                event=event,
                flow_file=rule.flow_file,
                jobs=rule.jobs,
                cancel_previous=rule.cancel_previous,
                concurrency=rule.concurrency,
            ),
            message_id=f"{run_id}:requested",
        )
        runs.append(run_id)
    log.info("%s of %s: %d run(s) requested", event.routing_key, event.repository.full_name, len(runs))
    return answer(200, runs=runs, skipped_ci=recipes.skip_requested(event))
