"""Commit statuses: the pure mapping from run and job notices to each host's request."""

from __future__ import annotations

import pytest

from tasuki.shared import statuses
from tasuki.shared.messages import Event, JobUpdated, PullRequest, Ref, Repository, RunUpdated
from tasuki.shared.registry import RepositoryConfig

SHA = "a" * 40


def event(host: str = "bitbucket", repo: str = "acme/api") -> Event:
    return Event(
        host=host,
        event="push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name=repo),
        ref=Ref(kind="branch", name="main"),
        after=SHA,
    )


def job(status: str, host: str = "bitbucket", **kw) -> JobUpdated:
    return JobUpdated(run_id="r1", job="build", status=status, event=event(host), rule_id="rule1", **kw)


def run(status: str, host: str = "bitbucket", **kw) -> RunUpdated:
    return RunUpdated(run_id="r1", status=status, event=event(host), rule_id="rule1", **kw)


@pytest.mark.parametrize(
    "tasuki,bitbucket,github,gitlab",
    [
        ("queued", "INPROGRESS", "pending", "pending"),
        ("running", "INPROGRESS", "pending", "running"),
        ("success", "SUCCESSFUL", "success", "success"),
        ("failure", "FAILED", "failure", "failed"),
        ("timeout", "FAILED", "failure", "failed"),
        ("error", "FAILED", "error", "failed"),
        ("cancelled", "STOPPED", "error", "canceled"),
        ("skipped", "SUCCESSFUL", "success", "skipped"),
    ],
)
def test_every_status_maps_to_each_hosts_state(tasuki, bitbucket, github, gitlab):
    for host, expected in (("bitbucket", bitbucket), ("github", github), ("gitlab", gitlab)):
        status = statuses.status_for(job(tasuki, host), "http://ci.example")
        request = statuses.request_for(status, "https://api", RepositoryConfig(token="t"))
        assert request.json["state"] == expected


def test_keys_are_stable_per_rule_and_job_and_fit_bitbucket():
    assert statuses.status_key("rule1", "build") == "tasuki-rule1-build"
    assert statuses.status_key("rule1") == "tasuki-rule1"
    long = statuses.status_key("0123456789ab", "a-job-with-a-really-long-name-indeed")
    assert len(long) <= 40 and long == statuses.status_key("0123456789ab", "a-job-with-a-really-long-name-indeed")
    assert long != statuses.status_key("0123456789ab", "a-job-with-a-really-long-name-indeeD")


def test_bitbucket_request():
    status = statuses.status_for(job("failure", exit_code=3, message="exited with code 3"), "http://ci.example/")
    request = statuses.request_for(status, "https://api.bitbucket.org/2.0/", RepositoryConfig(token="tok"))
    assert request.method == "POST"
    assert request.url == f"https://api.bitbucket.org/2.0/repositories/acme/api/commit/{SHA}/statuses/build"
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.json == {
        "key": "tasuki-rule1-build",
        "state": "FAILED",
        "name": "tasuki/build",
        "url": "http://ci.example/runs/r1#job-build",
        "description": "Job build failed (exit code 3): exited with code 3",
        "refname": "main",
    }


def test_bitbucket_app_password_is_basic_auth():
    status = statuses.status_for(run("running"), "http://ci")
    request = statuses.request_for(status, "https://api", RepositoryConfig(username="bot", app_password="pw"))
    assert request.headers["Authorization"] == "Basic Ym90OnB3"


def test_github_request():
    status = statuses.status_for(run("success", "github"), "http://ci")
    request = statuses.request_for(status, "https://api.github.com", RepositoryConfig(token="gh"))
    assert request.url == f"https://api.github.com/repos/acme/api/statuses/{SHA}"
    assert request.headers["Authorization"] == "Bearer gh"
    assert request.json == {
        "state": "success",
        "context": "tasuki",
        "target_url": "http://ci/runs/r1",
        "description": "Run passed",
    }


def test_gitlab_request_encodes_the_project_path():
    ev = event("gitlab", "group/sub/project")
    notice = JobUpdated(run_id="r1", job="test", status="running", event=ev, rule_id="x")
    request = statuses.request_for(
        statuses.status_for(notice, "http://ci"), "https://gitlab.com/api/v4", RepositoryConfig(token="gl")
    )
    assert request.url == f"https://gitlab.com/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}"
    assert request.headers["PRIVATE-TOKEN"] == "gl"
    assert request.json == {
        "state": "running",
        "name": "tasuki/test",
        "target_url": "http://ci/runs/r1#job-test",
        "description": "Job test running",
        "ref": "main",
    }


def test_pull_requests_report_on_the_source_branch_and_descriptions_fit():
    ev = event("github").model_copy(
        update={
            "kind": "pull_request",
            "ref": None,
            "pull_request": PullRequest(number=7, source_branch="feature", target_branch="main", source_commit=SHA),
        }
    )
    notice = RunUpdated(run_id="r", status="failure", event=ev, message="x" * 500)
    status = statuses.status_for(notice, "http://ci")
    assert status.refname == "feature"
    assert len(status.description) == 140


def test_no_commit_no_status():
    deleted = event().model_copy(update={"after": ""})
    assert statuses.status_for(RunUpdated(run_id="r", status="success", event=deleted), "http://ci") is None


def test_a_request_stays_under_the_hosts_configured_api():
    from tasuki.shared.errors import StatusNotSent
    from tasuki.shared.registry import RepositoryConfig

    status = statuses.status_for(
        RunUpdated(run_id="r", status="running", event=event("github", "acme/api"), rule_id="x"), "http://ci"
    )
    config = RepositoryConfig(token="t")
    assert statuses.request_for(status, "https://ghe.example/api/v3", config).url.startswith(
        "https://ghe.example/api/v3/repos/"
    )
    for name in ("acme/../../../user", "acme/./api", "..%2F..", "acme\\..\\x"):
        with pytest.raises(StatusNotSent, match="is not under https://ghe.example/api/v3"):
            statuses.request_for(
                status.__class__(**{**status.__dict__, "repository": name}), "https://ghe.example/api/v3", config
            )
    assert statuses.within("https://api.github.com/repos/a/b/statuses/" + "c" * 40, "https://api.github.com")
    assert not statuses.within("https://api.github.com.evil.example/repos/a", "https://api.github.com")
    assert not statuses.within("http://api.github.com/repos/a", "https://api.github.com")
    assert not statuses.within("https://ghe.example/api/v3x/repos/a", "https://ghe.example/api/v3")
