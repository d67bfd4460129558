import threading

import pytest

from data.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(50))
    assert threading.current_thread() not in threads


def test_an_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            yield from range(1000)
        finally:
            closed.set()

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(5)


def test_depth_is_checked():
    with pytest.raises(ValueError, match="depth: expected an int >= 1, got 0"):
        prefetch([], depth=0)
