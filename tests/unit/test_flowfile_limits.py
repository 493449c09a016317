"""Reading a hostile flow file is bounded: size, aliases, nesting, expansion and reading time are
limited with file:line messages, a job's timeout by the operator's maximum, and nothing but
`FlowFileError` ever comes out of planning, whatever the YAML (a hypothesis property)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasuki.shared import codec, flowfile
from tasuki.shared.errors import FlowFileError
from tasuki.shared.flowfile import reading
from tasuki.shared.messages import RunPlanned

# The classic "billion laughs": nine levels of nine aliases, 9**9 strings once expanded.
LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "jobs:\n  x: {plugin: acme/p, settings: {s: *i}}\n"
)


def refused(text: str | bytes, **kw) -> str:
    with pytest.raises(FlowFileError) as caught:
        flowfile.parse(text, **kw)
    return str(caught.value)


def test_a_few_hundred_bytes_of_aliases_cannot_make_a_huge_plan():
    assert len(LAUGHS) < 500
    message = refused(LAUGHS)
    assert message.startswith(".tasuki.yml:") and "aliases expand to more than" in message


@pytest.mark.parametrize(
    "text",
    [
        "jobs: " + "[" * 100_000 + "]" * 100_000,
        "jobs: " + "{a: " * 5_000 + "1" + "}" * 5_000,
        "jobs:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 300)) + "  " * 300 + "v\n",
        "jobs:\n" + "".join("  " * n + "-\n" for n in range(1, 300)),
    ],
)
def test_deep_nesting_is_refused_without_a_recursion_error(text):
    assert "nested deeper than 32 levels" in refused(text)


def test_aliases_that_nest_each_other_deeper_than_the_limit_are_refused():
    chain = "a0: &a0 [x]\n" + "".join(f"a{n}: &a{n} [[[[*a{n - 1}]]]]\n" for n in range(1, 30)) + "jobs: *a29\n"
    assert "nested deeper than 32 levels (its aliases expanded)" in refused(chain)


def test_an_alias_inside_the_value_it_names_is_refused():
    assert "refers to the value that holds it" in refused("loop: &l [*l]\njobs: {}\n")


def test_too_many_aliases_are_refused_at_their_line():
    text = "d: &d x\njobs:\n  a: {image: i, run: r, args: [" + ", ".join(["*d"] * 101) + "]}\n"
    assert refused(text).startswith(".tasuki.yml:3: more than 100 aliases")


def test_anchors_and_merge_keys_as_people_use_them_still_parse():
    text = (
        "jobs:\n"
        "  build: &defaults {image: python:3.12-slim, run: ci/build, env: {MODE: ci}, timeout: 10m}\n"
        "  test:  {<<: *defaults, run: ci/test, needs: [build]}\n"
        "  lint:  {<<: *defaults, run: ci/lint, needs: [build]}\n"
    )
    flow = flowfile.parse(text)
    assert flow.jobs["test"].image == "python:3.12-slim" and flow.jobs["lint"].timeout == 600


def test_a_file_over_the_size_limit_is_refused():
    big = "jobs:\n  a: {image: i, run: r}\n" + "# padding\n" * 30_000
    assert "a flow file has at most 262144" in refused(big)
    assert "a flow file has at most" in refused(big.encode())


def test_reading_slower_than_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(reading, "MAX_SECONDS", -1.0)  # every file is too slow
    assert "took longer than" in refused("jobs:\n  a: {image: i, run: r}\n")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("jobs:\n  a: {image: i, run: r, args: [" + "9" * 5000 + "]}\n", "cannot be read"),
        ("jobs: !!python/object:os.system {}\n", "could not determine a constructor"),
        ("jobs:\n  a: {image: i, run: r}\n---\njobs: {}\n", "expected a single document"),
        # found by the property below: a plan that could not travel as a message
        ("jobs:\n A: {plugin: A, settings: {A: 18446744073709551616}}\n", "numbers that fit in 64 bits"),
        ("jobs:\n A: {plugin: A, settings: {A: !!binary /w==}}\n", "numbers that fit in 64 bits"),
    ],
)
def test_what_the_yaml_library_chokes_on_is_a_flow_file_error(text, says):
    assert says in refused(text)


def test_a_timeout_over_the_operators_maximum_is_refused_at_its_line():
    text = "jobs:\n  build:\n    image: i\n    run: ci/build\n    timeout: 10h\n"
    message = refused(text, max_timeout=6 * 3600)
    assert (
        message
        == ".tasuki.yml:5: job 'build': timeout: 10h is longer than this Tasuki allows (6h, TASUKI_JOB_TIMEOUT_MAX)"
    )
    assert flowfile.parse(text, max_timeout=10 * 3600).jobs["build"].timeout == 36000


def test_a_file_with_many_problems_lists_the_first_ones():
    text = "jobs:\n" + "".join(f"  j{n}: {{image: i}}\n" for n in range(200))
    lines = refused(text).splitlines()
    assert len(lines) == flowfile.MAX_PROBLEMS + 1 and lines[-1] == ".tasuki.yml: and 180 more problems"


# --- the property --------------------------------------------------------------------------------

scalars = st.one_of(
    st.sampled_from(
        ["i", "ci/test", "tasuki/busybox", "10m", "99h", "~", "null", "true", "2024-01-01", "0x1F", "1e999", "-"]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8).map(lambda t: '"' + t.replace('"', "") + '"'),
    st.sampled_from(["!!binary aGk=", "!!python/name:os.system", "!!set {a}", "!!float nan", "&x y", "*x", "*nope"]),
    st.just("9" * 5000),  # more digits than Python turns into an int
)


def _bomb(levels: int, fanout: int) -> str:
    """Aliases of aliases, defined inline: fanout ** levels strings once expanded."""
    parts = [f"&l0 [{', '.join(['lol'] * fanout)}]"]
    parts += [f"&l{n} [{', '.join([f'*l{n - 1}'] * fanout)}]" for n in range(1, levels)]
    return f"[{', '.join(parts)}]"


bombs = st.builds(_bomb, st.integers(min_value=2, max_value=9), st.integers(min_value=2, max_value=9))


def _node(children):
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(
            st.tuples(st.sampled_from(["image", "run", "args", "env", "needs", "when", "k", "<<"]), children),
            max_size=4,
        ).map(lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"),
        st.tuples(st.sampled_from(["a", "b", "c"]), children).map(lambda pair: f"&{pair[0]} {pair[1]}"),
        st.sampled_from(["*a", "*b", "*c"]),
        st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "x" + "]" * n),
    )


values = st.recursive(scalars | bombs, _node, max_leaves=30)
jobs = st.dictionaries(st.sampled_from(["build", "test", "lint", "x y", "0"]), values, max_size=4).map(
    lambda items: "jobs:\n" + "".join(f"  {name}: {value}\n" for name, value in items.items())
)
flow_texts = st.one_of(
    jobs,
    values.map(lambda value: f"jobs:\n  x: {{plugin: acme/p, settings: {{s: {value}}}}}\n"),
    st.tuples(values, jobs).map(lambda pair: f"x-anchors: {pair[0]}\n{pair[1]}"),
    values,
    st.text(max_size=300),
    st.binary(max_size=300),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=flow_texts, event=st.sampled_from(["push", "tag", "pull_request"]), branch=st.text(max_size=5))
def test_any_yaml_is_planned_or_refused_and_a_plan_stays_small(text, event, branch):
    # Given any YAML of bounded size: jobs, anchors, aliases of aliases, deep nesting, odd tags
    assert len(text) < 64 * 1024
    try:
        flow = flowfile.parse(text, max_timeout=3600)
    except FlowFileError as exc:
        assert str(exc).startswith(".tasuki.yml"), str(exc)
        return
    selected, skipped = flowfile.select(flow, event=event, branch=branch)
    plan = codec.encode(RunPlanned(run_id="r", jobs=selected, skipped=skipped))
    # a plan is at most the expanded text the limits allow, with each value's keys around it
    assert len(plan) < 2 * flowfile.MAX_TEXT + 64 * flowfile.MAX_VALUES
