"""The push bridge (`tasuki bridge`): serves every push subscription of `tasuki.shared.topics`.

It consumes each subscription's RabbitMQ queue and POSTs every message to its function's URL as a
Google Cloud Pub/Sub push subscription would (`server`), with retries, backoff, ordering keys,
flow control and dead letters. It talks to RabbitMQ and to the functions' URLs, nothing else.

    schedule     the decisions, pure: which message is pushed when, what is acked, re-queued,
                 dead-lettered (ordering keys, backoff, flow control, consumer_timeout, filters)
    server       the I/O shell around it: per subscription one RabbitMQ consumer, the push
                 threads and a publisher; and the process's main()
    delivery     one message the bridge holds, and the headers that carry its state
    consumer     one subscription's RabbitMQ consumer (pika's asynchronous connection, one thread)
    pusher       one HTTP push and its answer (kept-alive http.client connections)
    acks         acknowledgements handed to the consumer's thread
    flowcontrol  slowing a subscription down while its endpoint keeps failing
"""
