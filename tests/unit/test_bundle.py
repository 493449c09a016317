"""The bundles' parts that need no process: requirements pinned from what the functions import
(and only that), every function's bundle with its entry point, nothing of tasuki.local."""

from __future__ import annotations

import ast
import zipfile
from importlib import metadata

import pytest

from tasuki import functions as tasuki_functions
from tasuki.local.deploy import bundle, requirements
from tasuki.shared.errors import ConfigError


def test_the_requirements_are_what_the_functions_import_pinned_with_their_dependencies(tmp_path):
    source = tmp_path / "f.py"
    source.write_text("import json\nimport yaml\nfrom tasuki.shared import push\n\ndef later():\n    import jwt\n")
    assert requirements.third_party(requirements.imported_modules([source])) == {"yaml", "jwt"}
    pins = requirements.pinned([source]).splitlines()
    assert pins[0].startswith("# Pinned by `tasuki deploy bundle`")
    names = [line.split("==")[0] for line in pins[1:]]
    assert names == sorted(names) == ["pyjwt", "pyyaml"] and all("==" in line for line in pins[1:])


def test_a_namespace_import_is_pinned_to_the_distribution_that_holds_it():
    assert requirements.distribution_of("google.auth") == "google-auth"
    assert requirements.distribution_of("functions_framework") == "functions-framework"
    with pytest.raises(ConfigError, match="no installed distribution provides"):
        requirements.distribution_of("no_such_module_anywhere")


def test_every_function_has_a_bundle_with_its_entry_point_and_the_local_processes_stay_out(tmp_path):
    built = bundle.build(tmp_path)
    assert [b.name for b in built] == list(tasuki_functions.NAMES)
    pins = (tmp_path / "router" / "requirements.txt").read_text()
    assert "functions-framework==" in pins and "google-auth==" in pins and "apig-wsgi==" in pins
    assert "docker==" not in pins and "honcho==" not in pins  # only the executor and `tasuki local` use them
    psycopg = metadata.version("psycopg")  # the PostgreSQL store; on a FaaS platform with its own libpq
    assert f"psycopg=={psycopg}\n" in pins and f"psycopg-binary=={psycopg}\n" in pins
    with zipfile.ZipFile(tmp_path / "web.zip") as archive:
        names = archive.namelist()
        main = archive.read("main.py").decode()
    assert "from tasuki.functions.web import web" in main and 'lambda_url.handler("web", __file__)' in main
    assert "tasuki/shared/web/templates/runs.html" in names and not [n for n in names if n.startswith("tasuki/local")]


@pytest.mark.parametrize("name", tasuki_functions.NAMES)
def test_an_entry_point_binds_its_functions_name_to_the_function_alone(name):
    # (the logs function shares its name with tasuki.shared.logs, which sets up the log lines)
    tree = ast.parse(bundle.MAIN.format(name=name))
    imported = [
        alias.asname or alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assigned = [
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    ]
    assert [*imported, *assigned].count(name) == 1


def test_a_function_importing_what_bundles_leave_out_is_refused(tmp_path, monkeypatch):
    stray = tmp_path / "stray.py"
    stray.write_text("from tasuki.local.cli import commands\n")
    files = {**bundle.package_files(), "tasuki/shared/stray.py": stray}
    monkeypatch.setattr(bundle, "package_files", lambda: files)
    with pytest.raises(ConfigError, match=r"the functions import tasuki.local.cli, which bundles leave out"):
        bundle.build(tmp_path / "out")


def test_a_platform_extra_adds_its_requirements_and_refuses_one_it_cannot_pin(monkeypatch):
    monkeypatch.setattr(requirements, "PLATFORM_EXTRAS", {"google-auth": frozenset({"pyjwt"})})
    assert "pyjwt" in requirements.closure(["google-auth"])  # installed: at its installed version
    monkeypatch.setattr(requirements, "PLATFORM_EXTRAS", {"google-auth": frozenset({"reauth"})})
    with pytest.raises(ConfigError, match="the functions need pyu2f, which is not installed"):
        requirements.closure(["google-auth"])  # neither installed nor pinned exactly by the extra
