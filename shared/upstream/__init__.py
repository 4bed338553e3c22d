"""Every private attribute of a library Waveline touches, one module per library.

Nothing else in shared/, services/ or waveline/ reaches past a library's public API: the
modules here name why each private attribute is used and what upstream would need to offer
instead, and tests/unit/test_upstream_private.py fails as soon as an upgrade moves or
changes one (the pinned versions are in pyproject.toml).

- ``aiokafka_private``: the consumer's fetcher and its prefetch backoff.
- ``faststream_private``: the class behind ``faststream.Context``; the Kafka batch
  subscriber's poll (no sleep after an empty one).
"""
