"""Tries the next aiortc release against our contract with its insides.

wcsvod reaches into aiortc (wcs/webrtc/internals.py lists every private name);
setup.py pins aiortc below the next minor release. This asks the package
index (through pip) for releases newer than the installed one, installs the
newest into a scratch folder of its own (the project's venv is left alone),
and runs the tests that hold that contract against it: the contract test, the
fast sender's and the RTP loop's unit tests. It prints, for each try, what
passed and every private name that went missing.

    scripts/bench.sh bench/next_aiortc.py            # the newest release there is
    scripts/bench.sh bench/next_aiortc.py --version 1.17.0
    scripts/bench.sh bench/next_aiortc.py --smoke    # the installed one, no download

No network is needed beyond the package index that pip already uses.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The tests that hold our contract with aiortc's insides.
CONTRACT_TESTS = [
    "tests/test_webrtc_internals.py",
    "tests/test_webrtc_sender.py",
    "tests/test_rtpstream.py",
    "tests/test_codecs.py",
]


def release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def newer_releases(current: str) -> list[str]:
    """Releases of aiortc the index has that are newer than ``current``."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "aiortc"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Available versions: (.*)", done.stdout)
    if found is None:
        raise SystemExit(f"pip could not list aiortc's releases: {done.stderr.strip()[-500:]}")
    every = [v.strip() for v in found[1].split(",")]
    return sorted((v for v in every if release(v) > release(current)), key=release)


def run_contract(extra_path: Path | None) -> tuple[int, str]:
    """The contract tests in a child interpreter, ``extra_path`` first on its path
    (the output starts with the aiortc release that child really imported)."""
    env_path = f"{extra_path}:{ROOT}" if extra_path else str(ROOT)
    loaded = subprocess.run(
        [sys.executable, "-c", "import aiortc; print(aiortc.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n0", "-q", "-p", "no:cacheprovider", *CONTRACT_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    return done.returncode, f"imported aiortc {loaded}\n" + done.stdout + done.stderr


def report(label: str, code: int, output: str) -> None:
    summary = re.findall(r"^\d+ (?:passed|failed).*$", output, re.M)
    missing = sorted(set(re.findall(r"has no (\w+) any more", output)))
    loaded = output.splitlines()[0].removeprefix("imported aiortc ")
    print(
        f"aiortc {label} (imported: {loaded}): contract tests"
        f" {'pass' if code == 0 else 'FAIL'} ({summary[-1] if summary else 'no summary'})"
    )
    if missing:
        print(f"  private names gone: {', '.join(missing)}")
    if code != 0 and not missing:
        print("  " + "\n  ".join(output.strip().splitlines()[-15:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", help="the aiortc release to try (default: the newest)")
    parser.add_argument(
        "--smoke", action="store_true", help="only the installed release: no download"
    )
    args = parser.parse_args()
    current = installed_version("aiortc")
    code, output = run_contract(None)
    report(f"{current} (installed)", code, output)
    if args.smoke:
        return
    wanted = args.version
    if wanted is None:
        newer = newer_releases(current)
        if not newer:
            print(f"aiortc next: the index has no release newer than {current}")
            return
        wanted = newer[-1]
    with tempfile.TemporaryDirectory(prefix="next-aiortc-") as scratch:
        target = Path(scratch)
        # its own dependencies too, where it needs newer ones than ours
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--target",
                str(target),
                f"aiortc=={wanted}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            print(f"aiortc {wanted}: could not be installed: {done.stderr.strip()[-800:]}")
            return
        code, output = run_contract(target)
        report(wanted, code, output)


if __name__ == "__main__":
    main()
