"""`tasuki secrets`: set (the value from stdin), list (names only), delete; a repository's or
the global ones; never a value on the terminal."""

from __future__ import annotations

import io
import os

import pytest

from tasuki.local.cli.commands import main
from tasuki.shared import sealing
from tasuki.shared.settings import Settings
from tasuki.shared.store import new_store


@pytest.fixture
def tasuki(tmp_path, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("TASUKI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TASUKI_DATA_DIR", str(tmp_path / "data"))
    registry = tmp_path / "repositories.yml"
    registry.write_text("repositories:\n  acme/api: {clone_url: https://git.example/acme/api.git}\n")
    monkeypatch.setenv("TASUKI_REPOSITORIES_FILE", str(registry))

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_secrets_are_set_from_stdin_listed_by_name_and_deleted(tasuki, tmp_path):
    code, out, _ = tasuki("secrets", "set", "acme/api", "DEPLOY_TOKEN", stdin="tok-9f8e7d6c\n")
    assert code == 0 and out.startswith("set DEPLOY_TOKEN (acme/api)")
    assert tasuki("secrets", "set", "--global", "SHARED", stdin="g")[0] == 0
    code, out, err = tasuki("secrets", "list", "acme/api")
    assert (code, out) == (0, "DEPLOY_TOKEN\n") and "tok-" not in out + err
    assert tasuki("secrets", "list", "--global")[1] == "SHARED\n"
    # The value as given, without the newline echo added, sealed with the store key
    settings = Settings(data_dir=tmp_path / "data")
    store = new_store(settings)
    [sealed] = store.sealed_secrets("acme/api", ["DEPLOY_TOKEN"]).values()
    assert sealing.unseal(settings.store_key_value(), sealing.Sealed(token=sealed)) == b"tok-9f8e7d6c"
    store.close()
    assert tasuki("secrets", "delete", "acme/api", "DEPLOY_TOKEN")[1] == "deleted DEPLOY_TOKEN (acme/api)\n"
    code, out, err = tasuki("secrets", "list", "acme/api")
    assert (code, out, err) == (0, "", "no secrets (acme/api)\n")


@pytest.mark.parametrize(
    "argv, words",
    [
        (("secrets", "set", "acme/nope", "X"), "acme/nope is not a registered repository"),
        (("secrets", "set", "acme/api", "bad-name"), "a secret's name is"),
        (("secrets", "set", "acme/api"), "name the secret"),
        (("secrets", "list"), "name a repository"),
        (("secrets", "set", "--global", "acme/api", "X"), "tasuki secrets set --global NAME: too many words"),
        (("secrets", "delete", "acme/api", "NEVER_SET"), "no secret NEVER_SET of acme/api"),
    ],
)
def test_mistakes_are_one_clear_line(tasuki, argv, words):
    code, _, err = tasuki(*argv, stdin="value")
    assert code == 2 and words in err and len(err.splitlines()) == 1
