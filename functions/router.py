"""Router: an Event pushed by the bridge becomes one `run.requested` per matching trigger rule.

Previous hop: functions/ingress.py. Next hop: functions/dispatcher.py (subscription
"dispatcher", ordered by run id). Rules are read from the store (the rules file is loaded into
it at start; `tasuki rules` changes them). Run ids are derived from the event and the rule, so
the same event delivered twice requests the same run, and the dispatcher makes it once. A head
commit saying `[skip ci]` or `[ci skip]` requests nothing. Every rule weighed, with the first
reason it did not match, is told in the delivery's story (shared/stories.py). A pull request
from a fork requests a run that waits for approval (shared/approval.py) unless its rule or
repository trusts forks.
"""

from __future__ import annotations

import logging

import functions_framework

from tasuki.shared import approval, logs, push, recipes, stories
from tasuki.shared.answers import answer, translated
from tasuki.shared.messages import Event
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
    # 3. Which rules does it trigger, and why not the others? (pure; [skip ci] triggers none)
    weighing = recipes.weigh(rt.store.list_rules(), event)
    rules = [rule for rule, why in weighing if why is None]
    # 4. Request one run per rule; the run id is the ordering key (RunMessage.ordering_key). A
    #    fork's pull request waits for approval unless the rule or the repository trusts forks.
    repository = rt.registry.get(event.repository.full_name) if event.from_fork else None
    runs = []
    for rule in rules:
        wait = approval.needed(event, rule_trusts_forks=rule.trust_forks, repository=repository)
        requested = recipes.request(event, rule, approval=wait)
        rt.publisher.publish(requested, message_id=f"{requested.run_id}:requested")
        runs.append(requested.run_id)
    # 5. Tell the delivery's story: this event, every rule weighed, the runs requested.
    step = f"router:{event.routing_key}:{event.ref.name if event.ref else ''}:{event.after[:12]}"
    rt.store.tell(
        event.delivery_id, step, stories.weighed(event, weighing, dict(zip([r.id for r in rules], runs, strict=True)))
    )
    log.info("%s of %s: %d run(s) requested", event.routing_key, event.repository.full_name, len(runs))
    return answer(200, runs=runs, skipped_ci=recipes.skip_requested(event))
