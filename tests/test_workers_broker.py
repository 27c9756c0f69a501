"""A worker survives losing Redis while it holds unacknowledged tasks (found by bench/soak.py:
kombu used the old channel after the connection was gone, to restore the unacknowledged tasks
and to acknowledge one that ended, and Celery stopped the control worker on the AttributeError).
The failing paths are driven directly, with the calls Celery makes: a message delivered and not
acknowledged, the broker stopped, the channel left as a lost connection leaves it; and the
search locks that a killed worker no longer holds for long."""

from __future__ import annotations

import logging

from kombu import Connection

import hurricane.workers.app  # noqa: F401  (installs the guard, as the worker does)
from tests.servers import RedisServer


def test_the_old_channel_of_a_lost_broker_raises_connection_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kombu.transport import redis as kombu_redis

    assert getattr(kombu_redis.Channel._connparams, "hurricane_guard", False)
    with RedisServer(log=tmp_path / "redis.log") as srv:
        conn = Connection(srv.url)
        ch = conn.channel()
        queue = conn.SimpleQueue("q", channel=ch)
        queue.put({"task": 1})
        queue.put({"task": 2})
        first = queue.get(timeout=10)  # delivered, never acknowledged (acks_late)
        second = queue.get(timeout=10)
        assert len(ch.qos._delivered) == 2
        srv.stop()  # Redis goes away
        ch._disconnect_pools()
        conn.transport.client = None  # what a closing connection leaves behind
        log = logging.getLogger("test")
        # a task that ends acknowledges (Celery: ack_log_error with the connection errors)
        first.ack_log_error(log, conn.connection_errors)
        conn.maybe_close_channel(ch)  # the consumer closes the channel: restore dropped
        assert ch.closed
        ch.connection = None  # as the closed connection leaves its old channel
        second.ack_log_error(log, conn.connection_errors)  # a task that ends after the close


def test_a_search_lock_is_renewed_while_held_and_expires_after_its_holder(redis_server,  # type: ignore[no-untyped-def]
                                                                           monkeypatch) -> None:
    """An advance (or reconcile) killed while it holds its lock blocks the search for
    LOCK_TTL_S, not for the task's time limit: the lock's TTL is short and a thread renews it
    while its holder lives."""
    import threading

    import redis

    from hurricane.workers import flight
    from tests.servers import wait_for

    r = redis.Redis.from_url(redis_server.url)
    lock = flight.search_lock(r, "s-renew", blocking_timeout=1)
    assert lock.acquire()
    assert 0 < r.pttl("hurricane:lock:s-renew") <= flight.LOCK_TTL_S * 1000
    errors: list[BaseException] = []

    def other_thread() -> None:  # where `renewed` runs: the token is not thread-local
        try:
            lock.reacquire()
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(30)
    assert not errors, errors
    lock.release()

    class Counting:
        def __init__(self) -> None:
            self.n = 0

        def reacquire(self) -> None:
            self.n += 1

    monkeypatch.setattr(flight, "LOCK_TTL_S", 0.04)
    c = Counting()
    with flight.renewed(c):
        wait_for(lambda: c.n >= 2, 60, "two renewals")
    after = c.n
    assert not [th for th in threading.enumerate() if th.name == "search-lock"]
    assert c.n == after  # no renewal once the block ended
