"""The C loop's tests again, against an AddressSanitizer build of _rtpout.c.

The extension is compiled here with ``-fsanitize=address`` (and the warnings
setup.py turns into errors), loaded in place of the installed one by a
sitecustomize in a child interpreter that preloads libasan, and
tests/test_rtpstream.py, tests/test_rtpstream_tcp.py and tests/test_tcp_sink.py run
there: any out-of-bounds read or write, use after
free or double free in the C code aborts that run with ASan's report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FINDER = '''
import importlib.abc, importlib.machinery, importlib.util, sys
PATH = {path!r}

class AsanBuild(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "wcs.webrtc._rtpout":
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, PATH)
        return importlib.util.spec_from_file_location(name, PATH, loader=loader)

sys.meta_path.insert(0, AsanBuild())
'''


def build(tmp_path: Path) -> Path:
    built = tmp_path / ("_rtpout" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(
        ["gcc", "-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1", "-fPIC",
         "-shared", "-Wall", "-Wextra", "-Werror", f"-I{sysconfig.get_paths()['include']}",
         str(ROOT / "wcs/webrtc/_rtpout.c"), "-lcrypto", "-o", str(built)],
        check=True, capture_output=True, text=True)
    return built


def test_the_c_tests_pass_under_address_sanitizer(tmp_path):
    built = build(tmp_path)
    (tmp_path / "sitecustomize.py").write_text(FINDER.format(path=str(built)))
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], check=True,
                             capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(LD_PRELOAD=libasan, PYTHONPATH=f"{tmp_path}:{ROOT}",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1")
    which = subprocess.run(
        [sys.executable, "-c", "import wcs.webrtc._rtpout as m; print(m.__file__)"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert which.stdout.strip() == str(built), which.stderr[-2000:]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n0", "-p", "no:cacheprovider", "-q",
         "tests/test_rtpstream.py", "tests/test_rtpstream_tcp.py", "tests/test_tcp_sink.py"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert "AddressSanitizer" not in output, output[-4000:]
    assert run.returncode == 0, output[-4000:]
    assert " passed" in output and "failed" not in output
