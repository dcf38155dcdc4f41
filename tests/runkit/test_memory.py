"""runkit.memory: glibc keeps freed memory for reuse once asked, and the switch leaves it alone."""

from __future__ import annotations

import subprocess
import sys

CODE = "from runkit.memory import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"


def _run(env_value: str | None) -> str:
    import os

    env = dict(os.environ)
    env.pop("SPIRAL_MALLOC_KEEP", None)
    if env_value is not None:
        env["SPIRAL_MALLOC_KEEP"] = env_value
    return subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True
    ).stdout


def test_mallopt_is_set_once_on_glibc_and_not_when_switched_off():
    import platform

    on = _run(None).split()
    assert on[0] == on[1]  # the second call reports the first one's result
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert on == ["True", "True"]
    assert _run("0").split() == ["False", "False"]
