"""Run benchmarks on two checkouts in turn, in one sitting: a before and an after.

    .venv/bin/python bench/before_after.py --before /path/to/old/checkout \
        noop_items sales_e2e spark_pipeline export_csv --rounds 2

Each checkout runs its own ``bench/<name>.py`` with its own virtualenv
(``<checkout>/.venv``, with the package installed editable), so each server runs the
code of its checkout. The runs alternate (before, after, before, after, …) so that a
change in the machine's load hits both sides alike; every run's output is printed.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, name: str, extra: list[str]) -> str:
    python = checkout / ".venv" / "bin" / "python"
    started = time.monotonic()
    out = subprocess.run([str(python), f"bench/{name}.py", *extra], cwd=checkout,
                         capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    text = out.stdout + (f"\n[stderr]\n{out.stderr[-2000:]}" if out.returncode else "")
    return f"(exit {out.returncode}, {took:.0f} s)\n{text.strip()}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--before", type=Path, required=True, help="the old checkout")
    p.add_argument("--after", type=Path, default=ROOT, help="the new checkout (this one)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--args", default="", help="extra arguments for every benchmark")
    p.add_argument("benchmarks", nargs="+")
    a = p.parse_args()
    extra = a.args.split()
    for name in a.benchmarks:
        for round_ in range(1, a.rounds + 1):
            for side, checkout in (("before", a.before), ("after", a.after)):
                print(f"== {name} round {round_} {side} {run(checkout, name, extra)}",
                      flush=True)


if __name__ == "__main__":
    main()
