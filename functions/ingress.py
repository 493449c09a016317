"""Ingress: a git host's webhook delivery becomes Events on `tasuki.events`.

Next hop: the bridge pushes each event to `functions/router.py` (subscription "router").
Answers 2xx only after RabbitMQ confirmed every event; 503 otherwise, so the host can retry.

    202 accepted     published, confirmed          200 duplicate   seen before, nothing published
    202 ignored      an event Tasuki does not act on              200 pong     GitHub's ping
    4xx              what is wrong with the delivery (see `shared.webhooks`), nothing published
    503              RabbitMQ or the store is unavailable: retry the delivery

Every answer is also told as the first step of the delivery's story (shared/stories.py): a
refused delivery under an id of its own (`stories.refused_id`: a sender cannot overwrite a real
delivery's story, and a flood of the same refusal is one story a minute, not one each).
"""

from __future__ import annotations

import logging

import functions_framework

from tasuki.shared import logs, stories, webhooks
from tasuki.shared.answers import answer, read_body, translated
from tasuki.shared.errors import BodyTooLarge, StoreError, WebhookError
from tasuki.shared.messages import utcnow
from tasuki.shared.runtime import Runtime, runtime

log = logging.getLogger("tasuki.ingress")


@functions_framework.http
@logs.scoped
@translated
def ingress(request):
    rt = runtime()
    # 1. A body over the limit is refused without reading (or keeping) the rest of it.
    try:
        body = read_body(request, rt.settings.max_body_bytes, "TASUKI_MAX_BODY_BYTES")
    except BodyTooLarge as exc:
        tell_refused(rt, request.headers, exc)
        raise
    # 2. Read the delivery: content type, host, JSON, signature, normalised events. A refusal is
    #    told in the story of its own (the answer is the same whether or not the store could).
    try:
        delivery = webhooks.read(
            request.headers,
            body,
            registry=rt.registry,
            unknown_repositories=rt.settings.unknown_repositories,
            max_events=rt.settings.max_events_per_delivery,
        )
    except WebhookError as exc:
        tell_refused(rt, request.headers, exc)
        raise
    logs.bind(delivery=delivery.delivery_id)  # every line logged from here on names the delivery
    # 3. An event Tasuki does not act on, or a ping, is answered and not published.
    if delivery.unpublished is not None:
        status = delivery.unpublished.status
        rt.store.tell(
            delivery.delivery_id,
            "ingress",
            stories.answered(
                status, delivery.host, delivery.event_name, delivery.repository, delivery.unpublished.reason
            ),
        )
        return answer(
            200 if status == "pong" else 202,
            status=status,
            reason=delivery.unpublished.reason,
            host=delivery.host,
            event=delivery.event_name,
        )
    # 4. The same delivery seen before makes nothing new.
    if rt.store.seen_delivery(delivery.delivery_id):
        rt.store.tell(delivery.delivery_id, "duplicate", stories.duplicate())
        return answer(200, status="duplicate", delivery=delivery.delivery_id)
    # 5. Publish every event together; only confirmed publishes count. Message ids are stable,
    #    so a retried delivery that was half-published makes the same runs downstream, not new ones.
    rt.publisher.publish_all(
        [
            (event, f"{delivery.delivery_id}#{index}", encoded)
            for index, (event, encoded) in enumerate(zip(delivery.events, delivery.bodies, strict=True))
        ]
    )
    # 6. Tell the story's first step (the events, for replay), and remember the delivery only now:
    #    a crash before this line makes the host's retry publish again (same message ids), never
    #    lose the delivery.
    rt.store.tell(
        delivery.delivery_id,
        "ingress",
        stories.accepted(delivery.host, delivery.event_name, delivery.repository, delivery.events),
    )
    rt.store.remember_delivery(delivery.delivery_id)
    log.info(
        "accepted %s %s of %s: %d event(s)",
        delivery.host,
        delivery.event_name,
        delivery.repository,
        len(delivery.events),
    )
    return answer(
        202,
        status="accepted",
        delivery=delivery.delivery_id,
        events=len(delivery.events),
        keys=sorted({event.routing_key for event in delivery.events}),
    )


def tell_refused(rt: Runtime, headers, exc: WebhookError | BodyTooLarge) -> None:
    """The story of a refused delivery, under an id of its own; a store that cannot take it
    changes nothing about the answer (nothing was published)."""
    claimed = (
        headers.get("X-Request-UUID") or headers.get("X-GitHub-Delivery") or headers.get("X-Gitlab-Event-UUID") or ""
    )
    try:
        rt.store.tell(
            stories.refused_id(exc.http_status, str(exc), utcnow()),
            "ingress",
            stories.refused(exc.http_status, str(exc), headers, claimed),
        )
    except StoreError as failed:
        log.warning("the refusal of a delivery was not told: %s", failed)
