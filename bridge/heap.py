"""The garbage collector tuned for a long-running daemon: what start-up built is frozen out of
every later collection, and young collections are rarer, so objects that live for one answer die
before any collection looks at them.

Each turn of a conversation allocates a few hundred objects (a PTB Update, the HTTP requests and
responses, futures and tasks) that live from milliseconds to the LLM's seconds; at CPython's
default thresholds (700, 10, 10) they are promoted into the oldest generation by the thousand,
and with 10,000 conversations waiting the full collections took a fifth of the process's CPU,
up to 300 ms each with the event loop stopped (README, Performance). Called once the daemon is
up (`botbridge run`; `bench.bridge_process` does the same), never in a test process.
"""

from __future__ import annotations

import gc

# Allocations (net of frees) between young collections, then young collections per middle one and
# middle ones per full one (CPython's own 25% rule still holds a full collection back until the
# objects promoted since the last are a quarter of those it would examine).
THRESHOLDS = (10_000, 20, 20)


def settle() -> None:
    """Collect what start-up left, freeze the survivors (modules, config, clients, pools) into the
    permanent generation, and set `THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
