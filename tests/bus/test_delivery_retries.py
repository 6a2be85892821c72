"""ReliableSender's re-sends keep submit order (without a broker: a scripted producer).

A record that failed is handed to the producer again before anything submitted after it, and failed
records go again in submit order, whichever failure was reported first; a failed record whose delivery
is cancelled stops holding the others back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaConnectionError

from tamiyo.bus.clients import KafkaSettings
from tamiyo.bus.delivery import ReliableSender


class ScriptedBroker:
    """The order in which records were handed over and acknowledged (an idempotent producer keeps
    hand-over order within a producer session); ``fail_first[value]`` = seconds after which the first
    attempt at that value fails."""

    def __init__(self, fail_first: dict[bytes, float]) -> None:
        self.fail_first = dict(fail_first)
        self.log: list[bytes] = []
        self.producers = 0

    def producer(self) -> ScriptedProducer:
        self.producers += 1
        return ScriptedProducer(self)


class ScriptedProducer:
    def __init__(self, broker: ScriptedBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        delay = self.broker.fail_first.pop(value, None)
        if delay is None:
            self.broker.log.append(value)
            fut.set_result(None)
        else:
            loop.call_later(delay, fut.set_exception, KafkaConnectionError("scripted failure"))
        return fut


async def _sender(broker: ScriptedBroker, max_in_flight: int = 16) -> ReliableSender:
    sender = ReliableSender(KafkaSettings("127.0.0.1:1"), max_in_flight, producer_factory=broker.producer)
    await sender.start()
    return sender


async def _submit(sender: ReliableSender, values: list[bytes], retries: list[bytes] | None = None) -> None:
    for v in values:
        await sender.slot()
        sender.submit("t", v, key=b"k", on_retry=lambda err, backoff, v=v: retries.append(v) if retries else None)


async def test_a_failed_record_is_sent_again_before_anything_submitted_after_it():
    broker = ScriptedBroker({b"2": 0.0})
    sender = await _sender(broker)
    await _submit(sender, [b"0", b"1", b"2", b"3"])
    while not sender._failed:  # the failure of 2 is known; its backoff (0.2 s) has begun
        await asyncio.sleep(0.01)
    await _submit(sender, [b"4", b"5", b"6"])
    await sender.wait_all()
    # 3 was acknowledged before 2 failed: it stays ahead (the documented residue); 4-6 wait for 2.
    assert broker.log == [b"0", b"1", b"3", b"2", b"4", b"5", b"6"]
    assert broker.producers == 2  # a fresh producer after the failure


async def test_failed_records_go_again_in_submit_order_whichever_failed_first():
    broker = ScriptedBroker({b"1": 0.05, b"2": 0.0})  # 2's failure is reported first, 1's 50 ms later
    sender = await _sender(broker)
    await _submit(sender, [b"0", b"1", b"2"])
    while len(sender._failed) < 2:
        await asyncio.sleep(0.01)
    await _submit(sender, [b"3"])
    await sender.wait_all()
    assert broker.log == [b"0", b"1", b"2", b"3"]


async def test_a_cancelled_failed_record_stops_holding_the_others_back():
    broker = ScriptedBroker({b"0": 0.0})
    sender = await _sender(broker)
    await _submit(sender, [b"0"])
    while not sender._failed:
        await asyncio.sleep(0.01)
    (first,) = sender._pending
    await _submit(sender, [b"1"])
    first.cancel()
    await asyncio.wait_for(sender.wait_all(), timeout=5)
    assert broker.log == [b"1"] and not sender._failed and sender.in_flight == 0


async def test_stop_gives_up_on_records_a_broker_never_acknowledges():
    class Silent(ScriptedBroker):
        def producer(self) -> ScriptedProducer:  # every send fails at once, forever
            self.producers += 1
            self.fail_first = {str(i).encode(): 0.0 for i in range(10)}
            return ScriptedProducer(self)

    broker = Silent({})
    sender = await _sender(broker, max_in_flight=3)
    await _submit(sender, [b"0", b"1", b"2"])
    await asyncio.sleep(0.3)
    await asyncio.wait_for(sender.stop(timeout_s=2), timeout=5)
    assert sender.in_flight == 0 and broker.log == []
