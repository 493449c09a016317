"""The project installed as a user installs it: `pip install <checkout>` (not editable) into a fresh
venv, then that venv's `tasuki local` started from another folder serves the web page and accepts
a signed webhook. This is what proves the package data (templates, Procfile, definitions) and
the declared dependencies are complete.

pip takes the dependencies from its cache when it can; it needs nothing but the package index.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import bitbucket_push
from tests.harness import LocalTasuki

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "acme/installed"
SECRET = "installed-secret"


def project_copy(destination: Path) -> Path:
    """The checkout's files as git sees them (committed or not, ignored ones left out): pip builds
    in the source folder, and the checkout is left as it is."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.mark.timeout(900)
def test_a_non_editable_install_runs_tasuki_local_from_another_folder(tmp_path, vhost):
    # Given: the project installed into a fresh venv, and a folder that is not the checkout
    venv = tmp_path / "venv"
    # (a venv without pip of its own, filled by this one's pip: making and running a second pip
    # would only add time)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, "install", "--quiet", "--no-compile", str(project_copy(tmp_path / "src"))],
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shutil.rmtree(tmp_path / "src")  # nothing may run from the source
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tasuki.shared.settings as s; print(s.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)) and "site-packages" in where, where
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "repositories.yml").write_text(
        f"repositories:\n  {REPOSITORY}: {{clone_url: https://bitbucket.org/{REPOSITORY}.git, secret: {SECRET}}}\n"
    )
    env = {
        "TASUKI_AMQP_URL": vhost,
        "TASUKI_DATA_DIR": str(tmp_path / "data"),
        "TASUKI_REPOSITORIES_FILE": str(elsewhere / "repositories.yml"),
    }
    # When: that venv's `tasuki local` runs there
    with LocalTasuki(env, tasuki=venv / "bin" / "tasuki", cwd=elsewhere) as tasuki:
        # Then: the web page answers, and a signed push of the registered repository is accepted
        page = requests.get(f"{tasuki.settings.web_url}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:500]
        body, headers = bitbucket_push(REPOSITORY, "main", "8fb0eefc6a340d57598ca553a07fade1a10f2c30")
        headers["X-Hub-Signature"] = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = tasuki.post_webhook(body, headers)
        assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
        unsigned = tasuki.post_webhook(*bitbucket_push(REPOSITORY, "main", "8fb0eefc6a340d57598ca553a07fade1a10f2c30"))
        assert unsigned.status_code == 401, unsigned.text
    assert not (elsewhere / ".tasuki").exists()  # the data went where TASUKI_DATA_DIR says
