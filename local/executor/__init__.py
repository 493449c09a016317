"""The Docker executor (`tasuki executor`): takes work orders from `tasuki.executor.<pool>` and
runs each job in a container.

It talks to RabbitMQ (orders in, job events out) and to a Docker engine; `tasuki run` reuses the
same pieces with no broker at all.

    service     the consumer loop, planning, running one job once, crash recovery; main()
    jobs        one job in a container, and the outcome a person reads
    convert     pure: a job and its context -> the Docker Engine API request
    containers  the few Docker calls, errors translated
    checkout    the mirror cache and each job's workspace
    logsink     job output in masked chunks
"""
