"""Time per evaluation of the allow-list expression evaluator (engine.bpmn.expressions),
the language of gateway conditions and assignments.

    .venv/bin/python -m bench.expressions [--n 20000]

Prints microseconds per call for a few typical expressions; asserts nothing (it was a
wall-clock assertion in the unit tests before: a figure belongs here)."""
from __future__ import annotations

import argparse
import sys
import time

from engine.bpmn.expressions import evaluate

CASES = (('decision == "reject"', {"decision": "reject"}),
         ("checklist['hose'] and not checklist['pump']", {"checklist": {"hose": True, "pump": False}}),
         ("sla_hours * 2 if priority == 'high' else sla_hours", {"sla_hours": 24, "priority": "high"}),
         ("len(after_photos) >= 1 and action in ('fixed', 'partly')", {"after_photos": ["a"], "action": "fixed"}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    args = p.parse_args(argv)
    print(f"{'expression':58} {'us/call':>8}")
    for text, names in CASES:
        evaluate(text, names)
        start = time.perf_counter()
        for _ in range(args.n):
            evaluate(text, names)
        print(f"{text:58} {(time.perf_counter() - start) / args.n * 1e6:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
