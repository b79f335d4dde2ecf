"""Before/after, interleaved: the same benchmark run alternately from two source trees.

    python -m bench.compare /tmp/before . --repeat 3 -- -m bench.e2e --platform telegram --no-floor

Each tree runs `python <args> --json …` with itself as the working directory (so its own
`bridge/` and `adapters/` are imported), A then B, `--repeat` times; the medians of messages/s,
added latency p50/p99 and CPU per 1,000 messages are printed side by side. Runs taken together
and interleaved are the only fair comparison on a shared, drifting machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._stats import median

_FIGURES = (
    ("messages/s", lambda r: r["messages_per_s"]),
    ("added p50 ms", lambda r: r["added_latency_ms"]["p50"]),
    ("added p99 ms", lambda r: r["added_latency_ms"]["p99"]),
    ("e2e p99 ms", lambda r: r["e2e_latency_ms"]["p99"]),
    ("cpu s/1000", lambda r: r["cpu_s_per_1000"]),
    ("peak rss MB", lambda r: r["peak_rss_mb"]),
)


def _once(tree: str, args: list[str], out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, *args, "--json", str(out)],
        cwd=tree, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("a", help="source tree A (before)")
    parser.add_argument("b", help="source tree B (after)")
    parser.add_argument("--repeat", type=int, default=3)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = parser.parse_args(argv[:cut])
    args = argv[cut + 1 :]  # the benchmark's own argv, after "--"
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(ns.repeat):
            for name, tree in (("A", ns.a), ("B", ns.b)):
                found = _once(str(Path(tree).resolve()), args, Path(tmp) / f"{name}{i}.json")
                results[name].append(found)
                print(f"{name} run {i + 1}: {found['messages_per_s']} messages/s", flush=True)
    print(f"{'median of ' + str(ns.repeat):16} {'A':>10} {'B':>10}")
    for label, get in _FIGURES:
        a = median(get(r) for r in results["A"])
        b = median(get(r) for r in results["B"])
        print(f"{label:16} {a:10.2f} {b:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
