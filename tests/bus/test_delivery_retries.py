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

    def __init__(self, fail_first: dict[bytes, float], warm_up_s: float = 0.0) -> None:
        self.fail_first = dict(fail_first)
        self.warm_up_s = warm_up_s
        self.log: list[bytes] = []
        self.producers = 0

    def producer(self) -> ScriptedProducer:
        self.producers += 1
        return ScriptedProducer(self)


class ScriptedProducer:
    def __init__(self, broker: ScriptedBroker) -> None:
        self.broker = broker
        self.warm = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> asyncio.Future:
        if self.broker.producers > 1 and not self.warm:  # a fresh producer fetches metadata first
            await asyncio.sleep(self.broker.warm_up_s)
            self.warm = True
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
    def retrying(value: bytes) -> None:
        if retries is not None:
            retries.append(value)

    for v in values:
        await sender.slot()
        sender.submit("t", v, key=b"k", on_retry=lambda err, backoff, v=v: retrying(v))


async def _until(cond) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_failed_record_is_sent_again_before_anything_submitted_after_it():
    broker, retries = ScriptedBroker({b"2": 0.0}), []
    sender = await _sender(broker)
    await _submit(sender, [b"0", b"1", b"2", b"3"], retries)
    await _until(lambda: retries)  # the failure of 2 is known; its backoff (0.2 s) has begun
    await _submit(sender, [b"4", b"5", b"6"])
    await sender.wait_all()
    # 3 was acknowledged before 2 failed: it stays ahead (the documented residue); 4-6 wait for 2.
    assert broker.log == [b"0", b"1", b"3", b"2", b"4", b"5", b"6"]
    assert broker.producers == 2  # a fresh producer after the failure


async def test_failed_records_go_again_in_submit_order_whichever_failed_first():
    broker, retries = ScriptedBroker({b"1": 0.05, b"2": 0.0}), []  # 2's failure is reported first, 1's later
    sender = await _sender(broker)
    await _submit(sender, [b"0", b"1", b"2"], retries)
    await _until(lambda: len(retries) == 2)
    assert retries == [b"2", b"1"]
    await _submit(sender, [b"3"])
    await sender.wait_all()
    assert broker.log == [b"0", b"1", b"2", b"3"]


async def test_a_cancelled_failed_record_stops_holding_the_others_back():
    broker, retries = ScriptedBroker({b"0": 0.0}), []
    sender = await _sender(broker)
    await _submit(sender, [b"0"], retries)
    await _until(lambda: retries)
    (first,) = sender._pending
    await _submit(sender, [b"1"])
    first.cancel()
    await asyncio.wait_for(sender.wait_all(), timeout=5)
    assert broker.log == [b"1"] and not sender._waiting and sender.in_flight == 0


async def test_a_record_submitted_while_a_resend_waits_for_a_fresh_producer_does_not_overtake():
    """The re-send of 0 holds the hand-over while the fresh producer warms up; 1 and 2 (submitted during the
    backoff) and 3 (during the warm-up, queued on the lock itself) still go in submit order."""
    broker, retries = ScriptedBroker({b"0": 0.0}, warm_up_s=0.05), []
    sender = await _sender(broker)
    await _submit(sender, [b"0"], retries)
    await _until(lambda: retries)
    await _submit(sender, [b"1", b"2"])
    await _until(lambda: broker.producers == 2)  # the backoff is over: the re-send waits for the warm-up
    await asyncio.sleep(0.01)
    await _submit(sender, [b"3"])
    await sender.wait_all()
    assert broker.log == [b"0", b"1", b"2", b"3"]


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


async def test_a_record_the_broker_refuses_for_good_is_given_up_and_the_rest_go_on():
    from aiokafka.errors import MessageSizeTooLargeError

    class Refusing(ScriptedProducer):
        async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> asyncio.Future:
            if value == b"huge":
                raise MessageSizeTooLargeError("over max.request.size")
            return await super().send(topic, value, key, headers)

    broker = ScriptedBroker({})
    sender = ReliableSender(KafkaSettings("127.0.0.1:1"), 8, producer_factory=lambda: Refusing(broker))
    await sender.start()
    dropped: list[str] = []
    for v in (b"0", b"huge", b"1"):
        await sender.slot()
        sender.submit("t", v, key=b"k", on_dropped=lambda err: dropped.append(type(err).__name__))
    await asyncio.wait_for(sender.wait_all(), timeout=5)
    assert broker.log == [b"0", b"1"] and dropped == ["MessageSizeTooLargeError"] and sender.in_flight == 0
