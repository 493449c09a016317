"""The dependencies layer of AWS Lambda: a bundle's requirements installed for Lambda's platform.

Lambda installs nothing from a requirements.txt: a function's dependencies come in its zip or in
a layer (unpacked under /opt, `python/` on the path). One layer serves every function, since
every bundle pins the same requirements. pip installs them for Lambda's platform (manylinux
x86_64 binary wheels, the bundles' CPython version) whatever this machine is, and the zip is
written reproducibly (local/deploy/bundle.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tasuki.local.deploy.bundle import write_zip
from tasuki.shared.errors import DeployError

PLATFORM = ("manylinux2014_x86_64", "x86_64")  # pip's platform tag, Lambda's architecture


def build_layer(requirements: str, python: str, out: Path) -> Path:
    """A layer zip with the requirements installed under python/ for Lambda's platform (binary
    wheels for manylinux x86_64 and this CPython version, whatever this machine is)."""
    folder = out / "layer"
    (out / "requirements.txt").write_text(requirements)
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    command += ["--target", str(folder / "python"), "--platform", PLATFORM[0], "--implementation", "cp"]
    command += ["--python-version", python, "--only-binary=:all:", "-r", str(out / "requirements.txt")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployError(f"cannot install the layer's requirements for Lambda: {done.stderr.strip()[-2000:]}")
    contents = {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    archive = out / "layer.zip"
    write_zip(archive, contents)
    return archive
