"""Ingress: a git host's webhook delivery becomes Events on `tasuki.events`.

Next hop: the bridge pushes each event to `functions/router.py` (subscription "router").
Answers 2xx only after RabbitMQ confirmed every event; 503 otherwise, so the host can retry.
"""

from __future__ import annotations

import functions_framework

from shared import webhooks
from shared.answers import answer, translated
from shared.errors import BrokerError
from shared.runtime import runtime


@functions_framework.http
@translated
def ingress(request):
    rt = runtime()
    # 1. Read the delivery: size, content type, host, JSON, signature, normalised events.
    body = request.get_data(cache=False)
    delivery = webhooks.read(
        request.headers,
        body,
        registry=rt.registry,
        max_body=rt.settings.max_body_bytes,
        unknown_repositories=rt.settings.unknown_repositories,
    )
    # 2. An event Tasuki does not handle is answered, not published.
    if delivery.events is None:
        return answer(202, status="ignored", host=delivery.host, event=delivery.event_name)
    # 3. The same delivery seen before makes nothing new.
    if not rt.store.remember_delivery(delivery.delivery_id):
        return answer(200, status="duplicate", delivery=delivery.delivery_id)
    # 4. Publish every event; only a confirmed publish counts. Ids are stable, so a retried
    #    delivery that was half-published before makes the same runs downstream, not new ones.
    try:
        for index, event in enumerate(delivery.events):
            rt.broker.publish(event, message_id=f"{delivery.delivery_id}#{index}")
    except BrokerError:
        rt.store.forget_delivery(delivery.delivery_id)
        raise
    return answer(202, status="accepted", delivery=delivery.delivery_id, events=len(delivery.events))
