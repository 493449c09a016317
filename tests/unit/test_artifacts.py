"""Artifacts on the executor's side: which files patterns match, what is refused, and the round
trip through a folder of objects (the S3 backend is held to the same contract elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasuki.local.executor import artifacts
from tasuki.shared import objects
from tasuki.shared.errors import FilesRefused
from tasuki.shared.flowfile.model import Artifacts
from tasuki.shared.messages import Artifact, JobFinished


def write(root: Path, rel: str, data: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for rel in ("dist/app.whl", "dist/sub/app.tar.gz", "reports/a.xml", "reports/deep/b.xml", "src/x.py", ".git/HEAD"):
        write(root, rel)
    return root


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("dist/", "dist/app.whl", True),
        ("dist", "dist/sub/app.tar.gz", True),
        ("reports/*.xml", "reports/a.xml", True),
        ("reports/*.xml", "reports/deep/b.xml", False),
        ("reports/**/*.xml", "reports/deep/b.xml", True),
        ("**/b.xml", "reports/deep/b.xml", True),
        ("dist/", "distribution/x", False),
        ("src/?.py", "src/x.py", True),
    ],
)
def test_patterns(pattern: str, path: str, expected: bool) -> None:
    assert artifacts.matches(pattern, path) is expected


def test_matching_groups_files_by_pattern_and_skips_git(workspace: Path) -> None:
    found = artifacts.matching(workspace, ["dist/", "reports/*.xml", ".git/", "nothing/"])
    assert [rel for rel, _ in found["dist/"]] == ["dist/app.whl", "dist/sub/app.tar.gz"]
    assert [rel for rel, _ in found["reports/*.xml"]] == ["reports/a.xml"]
    assert found[".git/"] == [] and found["nothing/"] == []


def test_a_symlink_out_of_the_workspace_is_refused(workspace: Path, tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", b"secret")
    os.symlink(secret, workspace / "dist" / "leak.txt")
    with pytest.raises(FilesRefused, match="dist/leak.txt is a symlink out of the workspace"):
        artifacts.matching(workspace, ["dist/"])


def test_a_symlinked_folder_out_of_the_workspace_is_refused(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink(tmp_path / "etc", workspace / "dist" / "etc")
    with pytest.raises(FilesRefused, match="symlink out of the workspace"):
        artifacts.matching(workspace, ["dist/"])


def test_a_symlink_inside_is_kept_as_its_file(workspace: Path) -> None:
    os.symlink(workspace / "src" / "x.py", workspace / "dist" / "x.py")
    found = artifacts.matching(workspace, ["dist/"])
    assert "dist/x.py" in [rel for rel, _ in found["dist/"]]


def test_keep_then_fetch_into_a_dependant(workspace: Path, tmp_path: Path) -> None:
    store = objects.FolderObjects(tmp_path / "objects")
    said: list[str] = []
    write(workspace, "dist/big.bin", os.urandom(300_000))
    kept = artifacts.keep(
        store, "run1", "build", workspace, Artifacts(paths=["dist/", "reports/*.xml"]), limit=10**6, say=said.append
    )
    assert {a.path for a in kept} == {"dist/app.whl", "dist/big.bin", "dist/sub/app.tar.gz", "reports/a.xml"}
    assert next(a.size for a in kept if a.path == "dist/big.bin") == 300_000
    assert said[0].startswith("uploaded dist/ 300.0 kB in ") and said[0].endswith("(3 files)")
    JobFinished(run_id="run1", job="build", status="success", artifacts=kept)  # they travel

    other = tmp_path / "other"
    write(other, "README")
    assert artifacts.fetch(store, "run1", ["build"], other, say=said.append) == 4
    assert (other / "dist/big.bin").read_bytes() == (workspace / "dist/big.bin").read_bytes()
    assert said[-1].startswith("downloaded the artifacts of build ")
    assert artifacts.fetch(store, "run1", ["lint"], other, say=said.append) == 0  # kept nothing


def test_over_the_limit_nothing_is_uploaded(workspace: Path, tmp_path: Path) -> None:
    store = objects.FolderObjects(tmp_path / "objects")
    write(workspace, "dist/big.bin", b"." * 5000)
    with pytest.raises(FilesRefused, match=r"5\.0 kB is more than the limit of 4\.0 kB \(TASUKI_ARTIFACTS_MAX_BYTES\)"):
        artifacts.keep(store, "r", "build", workspace, Artifacts(paths=["dist/"]), limit=4000, say=print)
    assert store.list("") == []


def test_fetch_never_writes_through_a_symlink_of_the_checkout(tmp_path: Path) -> None:
    # Given a build job's artifact dist/app, and a dependant whose checkout has dist -> outside
    store = objects.FolderObjects(tmp_path / "objects")
    built = tmp_path / "built"
    write(built, "dist/app", b"payload")
    artifacts.keep(store, "r", "build", built, Artifacts(paths=["dist/"]), limit=10**6, say=print)
    outside = tmp_path / "outside"
    outside.mkdir()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    os.symlink(outside, checkout / "dist")
    # When its artifacts are fetched, Then nothing lands outside
    with pytest.raises(FilesRefused, match="outside the workspace"):
        artifacts.fetch(store, "r", ["build"], checkout, say=print)
    assert list(outside.iterdir()) == []


def test_artifacts_syntax() -> None:
    assert Artifacts.model_validate(["dist/"]).when == "always"
    assert Artifacts.model_validate({"paths": "dist/", "when": "success"}).paths == ["dist/"]
    for bad in (["../x"], ["/etc/passwd"], [], {"paths": ["a"], "when": "sometimes"}, ["x"] * 51):
        with pytest.raises(ValueError):
            Artifacts.model_validate(bad)


def test_the_message_bounds_how_many_artifacts() -> None:
    with pytest.raises(ValueError):
        JobFinished(
            run_id="r", job="j", status="success", artifacts=[Artifact(path=f"f{i}", size=1) for i in range(1001)]
        )


def test_a_path_too_long_to_travel_is_refused_before_any_upload(tmp_path: Path) -> None:
    store = objects.FolderObjects(tmp_path / "objects")
    root = tmp_path / "ws"
    deep = "/".join(["d" * 200] * 5)
    write(root, f"dist/{deep}/x")
    write(root, "dist/a")
    with pytest.raises(FilesRefused, match="a path longer than 900 characters"):
        artifacts.keep(store, "r", "build", root, Artifacts(paths=["dist/"]), limit=10**6, say=print)
    assert store.list("") == []


@pytest.mark.parametrize(
    ("when", "status", "kept"),
    [
        ("always", "success", True),
        ("always", "failure", True),
        ("success", "success", True),
        ("success", "failure", False),
        ("always", "cancelled", False),
    ],
)
def test_when_artifacts_are_kept(workspace: Path, tmp_path: Path, when: str, status: str, kept: bool) -> None:
    from tasuki.local.executor.jobfiles import JobFiles
    from tasuki.local.executor.jobs import Outcome
    from tasuki.shared.flowfile import Job

    store = objects.FolderObjects(tmp_path / "objects")
    job = Job(name="build", image="x", run="ci/b", artifacts={"paths": ["dist/"], "when": when})
    outcome = JobFiles(store, "r", None, 10**6, 10**6).after(job, workspace, Outcome(status), print)
    assert bool(outcome.artifacts) is kept and bool(store.list("runs/")) is kept
    assert outcome.status == status


def test_a_rerun_of_failed_jobs_fetches_a_kept_jobs_artifacts_from_the_run_it_ran_in(tmp_path: Path) -> None:
    from tasuki.shared import scheduler
    from tasuki.shared.flowfile import Job
    from tasuki.shared.messages import Event, Ref, Repository
    from tasuki.shared.store import JobRecord, RunRecord

    # Given run r2 re-running r1's failed test, keeping build (its artifacts are under r1)
    store = objects.FolderObjects(tmp_path / "objects")
    built = tmp_path / "built"
    write(built, "dist/app", b"from r1")
    artifacts.keep(store, "r1", "build", built, Artifacts(paths=["dist/"]), limit=10**6, say=print)
    event = Event(
        host="github",
        event="push",
        kind="push",
        delivery_id="d",
        repository=Repository(full_name="a/b"),
        ref=Ref(kind="branch", name="main"),
        after="c" * 40,
    )
    run = RunRecord(id="r2", event=event, rerun_of="r1", kept=["build"])
    test = JobRecord(run_id="r2", name="test", spec=Job(name="test", image="x", run="ci/t", needs=["build"]), attempt=1)
    # When test is ordered, Then its order says where build's artifacts are, and fetching finds them
    order = scheduler.job_order(run, test)
    assert order.artifact_runs == {"build": "r1"}
    workspace = tmp_path / "ws"
    workspace.mkdir()
    assert artifacts.fetch(store, "r2", ["build"], workspace, say=print, elsewhere=order.artifact_runs) == 1
    assert (workspace / "dist/app").read_bytes() == b"from r1"
