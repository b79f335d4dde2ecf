"""Fixtures for the operations tests: a logging set-up that is undone after the test, and
helpers to read the Prometheus text format."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def log_setup() -> Iterator[Any]:
    """`stream = log_setup(fmt=..., levels=..., secrets=...)`: botbridge's logging into a
    StringIO; the root logger (and pytest's capture handler) come back after the test."""
    from bridge.logs import NOISY_LOGGERS, setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    touched: list[str] = list(NOISY_LOGGERS)

    def setup(**kwargs: Any) -> io.StringIO:
        stream = io.StringIO()
        touched.extend(kwargs.get("levels", {}) or {})
        setup_logging(stream=stream, **kwargs)
        return stream

    yield setup
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name in touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(False)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page: {(name, labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(page: str | dict, name: str, **labels: str) -> float | None:
    table = samples(page) if isinstance(page, str) else page
    return table.get((name, frozenset(labels.items())))
