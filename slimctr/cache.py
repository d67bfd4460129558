"""The encoded cache in memory: ``load_cache`` reads every split of a folder
written by ``slimctr prepare`` (see ``data.shards``), for caches small enough.

Larger caches are read by range: ``data.shards.open_cache(folder).train.read(
start, stop)``.
"""

import logging
from pathlib import Path

from data.shards import open_cache
from slimctr.pipeline import Encoded

logger = logging.getLogger(__name__)


def load_cache(folder: str | Path) -> tuple[Encoded, dict]:
    """The encoded splits of a cache, all in memory, and its data description
    (what a model trained on it records as ``metadata["data"]``)."""
    cache = open_cache(folder)
    encoded = Encoded(
        cache.encoder,
        cache.train.read_all(),
        cache.valid.read_all(),
        cache.test.read_all(),
    )
    return encoded, cache.manifest["data"]
