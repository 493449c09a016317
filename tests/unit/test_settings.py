import re
from pathlib import Path

import pytest

from tasuki.shared.errors import ConfigError
from tasuki.shared.settings import Settings


def test_defaults_and_environment_mapping():
    s = Settings.from_env({"TASUKI_INGRESS_PORT": "9000", "TASUKI_SECRETS": "a, b,,c", "PATH": "/bin"})
    assert s.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert s.ingress_port == 9000
    assert s.secret_values() == ["a", "b", "c"]
    assert s.endpoint("router") == "http://127.0.0.1:8081/"


def test_an_invalid_value_names_the_variable_and_what_was_found():
    with pytest.raises(ConfigError, match=r"TASUKI_INGRESS_PORT: .*found 'eighty'"):
        Settings.from_env({"TASUKI_INGRESS_PORT": "eighty"})


def test_an_unknown_variable_is_refused_so_typos_do_not_pass_silently():
    with pytest.raises(ConfigError, match="unknown setting TASUKI_AMQP_ULR"):
        Settings.from_env({"TASUKI_AMQP_ULR": "amqp://x"})


def test_the_push_key_is_generated_once_and_shared(tmp_path):
    a = Settings(data_dir=tmp_path).signing_key()
    b = Settings(data_dir=tmp_path).signing_key()
    assert a == b and len(a) > 30
    assert Settings(data_dir=tmp_path, push_key="explicit").signing_key() == "explicit"


README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_rows() -> list[tuple[list[str], str]]:
    """The README's Configuration table: each row's setting names (`TASUKI_` left out; `_NAME` in
    the table is short for `TASUKI_NAME`) and its default cell."""
    table = README.read_text().split("\n## Configuration\n", 1)[1].split("\n\n", 2)[1]
    rows = []
    for row in table.splitlines()[2:]:
        names, default = (cell.strip() for cell in row.split("|")[1:3])
        rows.append((re.findall(r"`(?:TASUKI)?_([A-Z0-9_]+)`", names), default))
    return rows


def test_the_readme_configuration_table_names_every_setting_and_no_other():
    assert {f"TASUKI_{name}" for names, _ in configuration_rows() for name in names} == set(Settings.variables())


def test_the_readme_configuration_table_gives_each_setting_its_default():
    """Where a setting's default is a value (not empty: then the table says what stands in),
    its row starts its default with that value; a row of several names lists their defaults in
    the same order."""
    checked = 0
    for variables, defaults in configuration_rows():
        given = [d.strip() for d in defaults.split(",")] if len(variables) > 1 else [defaults]
        for variable, text in zip(variables, given, strict=False):
            default = Settings.model_fields[variable.lower()].default
            if default in ("", None):
                continue
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            shown = re.match(r"`?([^` ]+)", text)
            assert shown is not None and shown.group(1) in (expected, expected.removesuffix(".0")), (variable, text)
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize("host", ["BITBUCKET", "GITHUB", "GITLAB"])
@pytest.mark.parametrize("url", ["ghe.example.com/api/v3", "ftp://ghe.example.com/", "https://", "https://h/api?x=1"])
def test_a_host_api_url_that_is_not_an_http_url_is_refused_at_start(host, url):
    with pytest.raises(
        ConfigError, match=rf"TASUKI_{host}_API_URL: expected the API's root as an http:// or https:// URL"
    ):
        Settings.from_env({f"TASUKI_{host}_API_URL": url})


def test_a_host_api_url_may_be_https_or_http():
    s = Settings.from_env(
        {
            "TASUKI_GITHUB_API_URL": "https://ghe.example.com/api/v3",
            "TASUKI_GITLAB_API_URL": "http://127.0.0.1:9/api/v4",
        }
    )
    assert s.api_url("github") == "https://ghe.example.com/api/v3"
    assert s.api_url("gitlab") == "http://127.0.0.1:9/api/v4"
    assert s.api_url("bitbucket") == ""
