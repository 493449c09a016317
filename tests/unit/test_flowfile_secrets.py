"""Secrets in the flow file: `secrets:` on a job (a name, or {name, from}) and plugin settings
{from_secret: NAME}; every mistake named by file, line and job."""

from __future__ import annotations

import pytest

from tasuki.shared import codec, flowfile
from tasuki.shared.errors import FlowFileError
from tasuki.shared.flowfile import Job

FLOW = """\
jobs:
  deploy:
    image: alpine
    run: ci/deploy
    secrets: [DEPLOY_TOKEN, {name: AWS_KEY, from: PROD_AWS_KEY}]
  notify:
    plugin: example/slack
    settings: {channel: ci, webhook: {from_secret: SLACK_HOOK}}
  test: {image: alpine, run: ci/test}
"""


def test_a_job_lists_its_secrets_by_name_or_as_another_variable():
    flow = flowfile.parse(FLOW)
    deploy, notify, test = flow.jobs["deploy"], flow.jobs["notify"], flow.jobs["test"]
    assert [(r.name, r.source) for r in deploy.secrets] == [
        ("DEPLOY_TOKEN", "DEPLOY_TOKEN"),
        ("AWS_KEY", "PROD_AWS_KEY"),
    ]
    assert deploy.secret_names() == ["DEPLOY_TOKEN", "PROD_AWS_KEY"]
    assert notify.setting_secrets() == {"webhook": "SLACK_HOOK"} and notify.secret_names() == ["SLACK_HOOK"]
    assert test.secret_names() == []


def test_a_job_with_secrets_travels_in_messages_unchanged():
    job = flowfile.parse(FLOW).jobs["deploy"]
    assert Job.model_validate(codec.msgpack.unpackb(codec.msgpack.packb(job.model_dump(mode="json")))) == job


INVALID = {
    "not a list": ("    secrets: DEPLOY_TOKEN\n", ".tasuki.yml:5: job 'deploy': secrets: secrets is a list"),
    "not a variable name": (
        "    secrets: [deploy-token]\n",
        ".tasuki.yml:5: job 'deploy': secrets[0]: a secret's name is",
    ),
    "bad from": (
        "    secrets: [{name: TOKEN, from: 'a b'}]\n",
        ".tasuki.yml:5: job 'deploy': secrets[0].from: a secret's name is",
    ),
    "unknown key": (
        "    secrets: [{name: TOKEN, form: X}]\n",
        ".tasuki.yml:5: job 'deploy': secrets[0].form: unknown key 'form'; expected one of: name, from",
    ),
    "tasuki's own": ("    secrets: [TASUKI_COMMIT]\n", "names starting with TASUKI_ are Tasuki's own"),
    "twice": (
        "    secrets: [A, {name: A, from: B}]\n",
        ".tasuki.yml:5: job 'deploy': secrets: the variable A is given twice",
    ),
    "also in env": ("    env: {A: x}\n    secrets: [A]\n", ".tasuki.yml:6: job 'deploy': secrets: A is also in env"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_mistakes_in_secrets_name_the_file_line_and_job(case):
    lines, expected = INVALID[case]
    text = "jobs:\n  deploy:\n    image: alpine\n    run: ci/deploy\n" + lines
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(text)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ("{token: {from_secret: 'no way'}}", ".tasuki.yml:2: job 'p': settings: a secret's name is"),
        ("{tokens: [{from_secret: A}]}", "settings.tokens: from_secret names a whole setting"),
        ("{token: {from_secret: A, other: 1}}", "settings.token: from_secret names a whole setting"),
    ],
)
def test_from_secret_names_one_whole_setting(settings, expected):
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(f"jobs:\n  p: {{plugin: example/x, settings: {settings}}}\n")
    assert expected in str(caught.value)
