"""Small helpers for tests that drive the real command line."""
import os
import subprocess
import sys


def md(*args, root, input=None, timeout=60, check=False):
    """Run `minidocker ARGS` as a user would; returns the CompletedProcess (text)."""
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    result = subprocess.run([sys.executable, "-m", "minidocker", *map(str, args)], env=env, input=input,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"minidocker {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result
