"""The long fuzzing run, outside CI: every property of tests/fuzz with many more examples and a per-example deadline.

    python tests/fuzz/run_long.py [EXAMPLES] [DEADLINE_MS]      (defaults: 4000 examples, 2000 ms)

Prints, per property, hypothesis's statistics (examples run, time) and the run's peak memory; a failing example
(another exception, a multi-line message, a hang past the deadline) fails the run and is printed by hypothesis so
that it can become a plain test.
"""
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "4000"
    deadline = sys.argv[2] if len(sys.argv) > 2 else "2000"
    env = dict(os.environ, INPAINTLAB_FUZZ_EXAMPLES=examples, INPAINTLAB_FUZZ_DEADLINE_MS=deadline)
    started, status = time.time(), 0
    for path in sorted(HERE.glob("test_fuzz_*.py")):
        run = subprocess.run([sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider",
                              "-p", "no:logging", "--hypothesis-show-statistics", "-k", "not found"],
                             cwd=HERE.parent.parent, env=env, capture_output=True, text=True)
        status = status or run.returncode
        stats = run.stdout.split("Hypothesis Statistics")[-1].split("warnings summary")[0]
        failures = [line for line in run.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:]
        print(stats.strip(), *failures, summary, sep="\n", flush=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"total {time.time() - started:.0f} s, peak memory of one run {peak:.0f} MiB, exit status {status}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
