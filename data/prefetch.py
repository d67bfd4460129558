"""Reading ahead: the items of an iterator produced by a background thread, so
that parsing the next chunk overlaps the work done on this one."""

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Yield ``items`` in order while a thread reads up to ``depth`` ahead.

    An exception raised by ``items`` is raised here, after the items before
    it. Closing the returned generator early stops the thread at its next
    item. Arguments are checked when this is called.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth: expected an int >= 1, got {depth!r}")
    return _prefetched(items, depth)


def _prefetched(items: Iterable, depth: int) -> Iterator:
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    source = iter(items)

    def produce() -> None:
        try:
            for item in source:
                if not hand_over(item):
                    return
            hand_over(_DONE)
        except BaseException as err:  # raised again in the consumer
            hand_over(err)
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # a generator: let it release what it holds
                close()

    thread = threading.Thread(target=produce, name="slimctr-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
