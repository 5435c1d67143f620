"""Play tokens: what opens a stream, what does not, and the README's examples
(Python and JavaScript) making tokens the server accepts."""

from __future__ import annotations

import re
import subprocess
import textwrap
import time

from testkit.harness import REPO
from wcs.access import tokens

SECRET = "a-secret-of-sixteen+"
NOW = 1_800_000_000


def test_a_token_opens_its_name_until_it_expires():
    token = tokens.sign(SECRET, "vod://movie.mp4", NOW + 60)
    assert tokens.refusal(SECRET, "vod://movie.mp4", token, NOW) is None
    assert tokens.refusal(SECRET, "vod://movie.mp4", token, NOW + 59.9) is None
    assert tokens.refusal(SECRET, "vod://movie.mp4", token, NOW + 60) == "token expired"


def test_every_bad_token_is_refused_saying_why():
    good = tokens.sign(SECRET, "show", NOW + 60)
    expires, signature = good.split(".")
    cases = {
        None: "no token",
        "": "no token",
        7: "a token must be a string",
        "x" * 300: "a token must be a string",
        "nodot": "malformed",
        "soon.abc": "malformed",
        f"{int(expires) + 1}.{signature}": "does not match",  # a later expiry, same signature
        tokens.sign("another-secret-16chars", "show", NOW + 60): "does not match",
        tokens.sign(SECRET, "other", NOW + 60): "does not match",
        tokens.sign(SECRET, "show", NOW - 1): "expired",
    }
    for token, why in cases.items():
        refusal = tokens.refusal(SECRET, "show", token, NOW)
        assert refusal is not None and why in refusal, (token, refusal)


def test_a_stream_s_token_never_opens_a_record_of_that_name():
    token = tokens.sign(SECRET, "movie.mp4", NOW + 60)
    assert tokens.refusal(SECRET, tokens.RECORDS + "movie.mp4", token, NOW) is not None


def readme_example(language: str) -> str:
    """The README's token example in ``language``."""
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"```{language}\n(# play token|// play token)\n(.*?)```", readme,
                      re.DOTALL)
    assert found, f"the README has no {language} play token example"
    return found.group(2)


def test_the_readme_s_python_example_makes_tokens_the_server_accepts():
    namespace = {"SECRET": SECRET, "name": "vod://movie.mp4"}
    exec(readme_example("python"), namespace)
    token = namespace["token"]
    assert tokens.refusal(SECRET, "vod://movie.mp4", token, time.time()) is None


def test_the_readme_s_javascript_example_makes_tokens_the_server_accepts():
    script = textwrap.dedent(f"""
        const SECRET = {SECRET!r}; const name = "vod://movie.mp4";
        {readme_example("javascript")}
        console.log(token);
    """)
    token = subprocess.run(["node", "-e", script], capture_output=True, text=True,
                           check=True, timeout=30).stdout.strip()
    assert tokens.refusal(SECRET, "vod://movie.mp4", token, time.time()) is None
