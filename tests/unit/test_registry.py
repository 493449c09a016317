"""The repository registry (names compared normalised, clone URLs only from it) and the clone URL
policy (TASUKI_CLONE_SCHEMES, git's dangerous transports)."""

from __future__ import annotations

import pytest

from tasuki.shared import cloneurls
from tasuki.shared.errors import ActionError, CheckoutFailed, ConfigError
from tasuki.shared.messages import Event, Ref, Repository
from tasuki.shared.recipes import Rule
from tasuki.shared.registry import Registry, Repositories, RepositoryConfig, find_in, load_registry, normalise
from tasuki.shared.settings import Settings

ALL = cloneurls.SCHEMES


class Stored:
    """The store's side: repositories registered on the page or through the API."""

    def __init__(self, configs: dict[str, RepositoryConfig] | None = None) -> None:
        self.configs = dict(configs or {})

    def list_repositories(self):
        return dict(self.configs)

    def find_repository(self, full_name):
        return find_in(self.configs.items(), full_name)

    def put_repository(self, name, config):
        self.configs[name] = config


# --- clone URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("https://bitbucket.org/acme/api.git", "https"),
        ("HTTPS://github.com/acme/api", "https"),
        ("http://169.254.169.254/latest/meta-data", "http"),
        ("ssh://git@internal/acme/api.git", "ssh"),
        ("git+ssh://internal/acme/api.git", "ssh"),
        ("git@github.com:acme/api.git", "ssh"),
        ("internal:acme/api.git", "ssh"),
        ("git://internal/acme/api.git", "git"),
        ("/srv/git/api.git", "file"),
        ("./api.git", "file"),
        ("relative/dir:with-colon", "file"),
        ("file:///srv/git/api.git", "file"),
        ("ext::sh -c touch% /tmp/pwned", "ext"),
        ("fd::17", "fd"),
        ("ftp://host/repo.git", "ftp"),
    ],
)
def test_each_url_is_read_as_git_reads_it(url, scheme):
    assert cloneurls.scheme(url) == scheme


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ext::sh -c touch% /tmp/pwned", "never allowed"),
        ("ext::ssh -o ProxyCommand=x host", "never allowed"),
        ("fd::17", "never allowed"),
        ("-uhelp", "cannot start with '-'"),
        ("--upload-pack=touch /tmp/pwned", "cannot start with '-'"),
        ("ssh://-oProxyCommand=touch%20x/path", "cannot start with '-'"),
        ("ssh://-oProxyCommand=x@host/path", "cannot start with '-'"),
        ("https://host/a b", "spaces or control characters"),
        ("https://host/a\nb", "spaces or control characters"),
        ("persistent-https::https://host/a", "remote helper"),
        ("ftp://host/repo.git", "not one Tasuki clones from"),
        ("", "no clone URL"),
    ],
)
def test_dangerous_urls_are_refused_whatever_is_allowed(url, says):
    wrong = cloneurls.problem(url, ALL)
    assert wrong is not None and says in wrong


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "ssh://internal/acme/api.git",
        "git@internal:acme/api.git",
        "/etc",
        "file:///root/.ssh",
        "git://internal/x",
    ],
)
def test_only_https_is_allowed_unless_the_operator_adds_more(url):
    default = Settings().allowed_clone_schemes
    assert default == ("https",)
    wrong = cloneurls.problem(url, default)
    assert wrong is not None and "TASUKI_CLONE_SCHEMES=https" in wrong
    assert cloneurls.problem(url, ALL) is None
    assert cloneurls.problem("https://bitbucket.org/acme/api.git", default) is None


def test_the_setting_names_known_schemes_only():
    assert Settings.from_env({"TASUKI_CLONE_SCHEMES": " HTTPS ,ssh,file,ssh"}).allowed_clone_schemes == (
        "https",
        "ssh",
        "file",
    )
    for bad, says in (("ext", "never allowed"), ("https,fd", "never allowed"), ("ftp", "unknown"), (",", "at least")):
        with pytest.raises(ConfigError, match=f"TASUKI_CLONE_SCHEMES: .*{says}"):
            Settings.from_env({"TASUKI_CLONE_SCHEMES": bad})
    assert cloneurls.git_protocols(("https", "ssh", "file")) == "https:ssh:file"


# --- names ----------------------------------------------------------------------------------------


def test_names_are_compared_without_spaces_slashes_or_case():
    assert {normalise(n) for n in ("acme/api", " ACME/Api ", "acme/api/", "/acme/api", "acme/api /", "acme/api\t")} == {
        "acme/api"
    }


def test_a_registry_file_naming_one_repository_twice_is_refused(tmp_path):
    path = tmp_path / "repos.yml"
    path.write_text(
        "repositories:\n  acme/api: {clone_url: https://h/a.git}\n  ACME/API: {clone_url: https://h/b.git}\n"
    )
    with pytest.raises(ConfigError, match="same repository"):
        load_registry(path)
    path.write_text("repositories:\n  acme/..: {clone_url: https://h/a.git}\n")
    with pytest.raises(ConfigError, match="named like workspace/repository"):
        load_registry(path)


def test_a_registry_file_with_a_clone_url_of_another_scheme_is_refused_naming_it(tmp_path):
    path = tmp_path / "repos.yml"
    path.write_text("repositories:\n  acme/api: {clone_url: 'ssh://internal/acme/api.git'}\n")
    with pytest.raises(
        ConfigError, match=r"repos.yml: repositories.acme/api.clone_url: ssh clone URLs are not allowed"
    ):
        load_registry(path)
    assert load_registry(path, ("https", "ssh")).find("Acme/API")[0] == "acme/api"
    path.write_text("repositories:\n  acme/api: {clone_url: 'ext::sh -c id'}\n")
    with pytest.raises(ConfigError, match="never allowed"):
        load_registry(path, ALL)


def test_the_page_wins_over_the_file_and_both_are_found_by_any_spelling():
    file = Registry(repositories={"acme/api": RepositoryConfig(clone_url="https://h/file.git", secret="f")})
    registry = Repositories(file, Stored({"acme/web": RepositoryConfig(secret="w")}))
    assert registry.find(" ACME/API/") == ("acme/api", file.repositories["acme/api"])
    assert registry.get("Acme/Web").secret == "w"
    assert registry.get("acme/other") is None
    legacy = Repositories(file, Stored({"Acme/Api": RepositoryConfig(clone_url="https://h/store.git")}))
    assert legacy.find("acme/api")[1].clone_url == "https://h/store.git"


def test_registering_a_name_that_is_there_already_in_any_spelling_is_refused():
    file = Registry(repositories={"acme/api": RepositoryConfig(clone_url="https://h/a.git", secret="s")})
    registry = Repositories(file, Stored({"acme/web": RepositoryConfig()}))
    for name, where in (("ACME/api", "registry file"), ("acme/api/", "registry file"), (" Acme/Web", "")):
        with pytest.raises(ActionError) as caught:
            registry.registrable(name, RepositoryConfig(clone_url="https://evil.example/x.git"))
        assert caught.value.http_status == 409 and "registered already" in str(caught.value)
        assert where in str(caught.value)
    assert registry.registrable(" acme/new/ ", RepositoryConfig(clone_url="https://h/n.git")) == "acme/new"


@pytest.mark.parametrize(
    ("name", "url", "says"),
    [
        ("acme/..", "https://h/a.git", "named like"),
        ("acme", "https://h/a.git", "named like"),
        ("acme/api", "http://169.254.169.254/x", "http clone URLs are not allowed"),
        ("acme/api", "/srv/git/api.git", "file clone URLs are not allowed"),
        ("acme/api", "ext::sh -c id", "never allowed"),
        ("acme/api", "-uhelp", "cannot start with '-'"),
    ],
)
def test_registering_refuses_names_and_urls_with_a_400_that_says_why(name, url, says):
    with pytest.raises(ActionError) as caught:
        Repositories(Registry(), Stored()).registrable(name, RepositoryConfig(clone_url=url))
    assert caught.value.http_status == 400 and says in str(caught.value)


# --- the clone URL of a checkout -----------------------------------------------------------------


def test_a_checkout_clones_from_the_registry_only():
    registry = Repositories(
        Registry(
            repositories={
                "acme/api": RepositoryConfig(clone_url="https://bitbucket.org/acme/api.git"),
                "acme/local": RepositoryConfig(clone_url="/srv/git/local.git"),
                "acme/nourl": RepositoryConfig(secret="s"),
            }
        ),
        Stored(),
    )
    assert registry.checkout("ACME/api/").clone_url == "https://bitbucket.org/acme/api.git"
    for name, says in (
        ("acme/unknown", "acme/unknown is not registered"),
        ("acme/nourl", "registered without a clone URL"),
        ("acme/local", "file clone URLs are not allowed"),
    ):
        with pytest.raises(CheckoutFailed, match=says):
            registry.checkout(name)
    assert Repositories(registry.file, None, ("https", "file")).checkout("acme/local").clone_url == "/srv/git/local.git"


def test_rules_match_repositories_compared_as_the_registry_compares_them():
    def event(name: str) -> Event:
        return Event(
            host="github",
            event="push",
            kind="push",
            delivery_id="d",
            repository=Repository(full_name=name),
            ref=Ref(kind="branch", name="main"),
            after="a" * 40,
        )

    exact, glob = Rule(repository="Acme/API/"), Rule(repository="acme/*")
    for name in ("acme/api", "ACME/Api", "acme/api "):
        assert exact.matches(event(name)) and glob.matches(event(name))
    assert not exact.matches(event("acme/api2")) and not glob.matches(event("other/api"))
