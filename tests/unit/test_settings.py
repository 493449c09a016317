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
