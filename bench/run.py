"""Run every bench/bench_*.py in turn; each prints its own table. Usage: python bench/run.py [name …]"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = set(sys.argv[1:])
    failed = 0
    for script in sorted(HERE.glob("bench_*.py")):
        if wanted and script.stem.removeprefix("bench_") not in wanted:
            continue
        print(f"\n## {script.stem}", flush=True)
        failed |= subprocess.run([sys.executable, str(script)], cwd=HERE).returncode
    return failed


if __name__ == "__main__":
    sys.exit(main())
