"""Start-up time: ``moa --help`` and ``import moa_graph``, each as a whole new process.

python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from benchmarks.common import machine, save, summary

COMMANDS = {
    "moa --help": [shutil.which("moa") or "moa", "--help"],
    "python -c 'import moa_graph'": [sys.executable, "-c", "import moa_graph"],
    "python -c 'from moa_graph import create_moa'": [
        sys.executable,
        "-c",
        "from moa_graph import create_moa",
    ],
    "python -c 'import sys' (interpreter alone)": [sys.executable, "-c", "import sys"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows = ["| command | median | p10 | p90 |", "|---|---|---|---|"]
    for label, command in COMMANDS.items():
        samples = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            samples.append(time.perf_counter() - started)
        median, p10, p90 = summary(samples)
        rows.append(f"| `{label}` | {median:.3f} s | {p10:.3f} s | {p90:.3f} s |")
    text = f"{args.runs} runs each; {machine()}.\n\n" + "\n".join(rows) + "\n"
    print(text)
    print(f"saved to {save('startup', text)}")


if __name__ == "__main__":
    main()
