import pytest

from tasuki.shared.broker import Broker
from tasuki.shared.errors import BrokerUnavailable
from tasuki.shared.messages import Event, Repository
from tests.proxy import TcpProxy


def test_the_proxy_takes_the_broker_away_and_brings_it_back(vhost):
    vhost_name = vhost.rsplit("/", 1)[1]
    event = Event(host="h", event="e", kind="push", delivery_id="d", repository=Repository(full_name="a/b"), after="x")
    with TcpProxy(5672) as proxy:
        broker = Broker(f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost_name}")
        broker.declare()
        broker.publish(event)
        proxy.down()
        with pytest.raises(BrokerUnavailable):
            broker.publish(event)
        proxy.up()
        broker.publish(event)  # reconnects by itself
        broker.close()
