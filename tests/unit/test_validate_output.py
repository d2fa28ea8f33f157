"""`chaosctl validate` for CI: each reworked message's exact text, the line of each issue, and the
JUnit XML and GitHub annotation formats."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.cli import main
from chaos_engineering.issues import ValidationIssue, github_annotation, junit_report
from chaos_engineering.policy import load_policy
from chaos_engineering.yamlload import read_documents
from tests.unit.catalogue_support import POLICY_PATH, base_experiment, load, mutated, write_yaml

# One key or value a line, so that a case can say which line it breaks.
EXPERIMENT = """\
name: booking-api-pod-kill
tier: low
title: Kill one booking-api pod
hypothesis: Bookings keep flowing.
target:
  service: booking-api
chaos:
  kind: PodChaos
  spec:
    action: pod-kill
    mode: one
    selector:
      namespaces: [booking]
      labelSelectors:
        app: booking-api
        app.kubernetes.io/name: booking-api
    duration: 60s
"""


SELECTOR = "    selector:\n      namespaces: [booking]\n      labelSelectors:\n        app: booking-api\n        app.kubernetes.io/name: booking-api\n"


def with_line(number: int, text: str) -> str:
    """EXPERIMENT with its line `number` (from 1) replaced by `text` ("" removes it)."""
    lines = EXPERIMENT.splitlines(keepends=True)
    lines[number - 1] = text
    return "".join(lines)


def issues_of(tmp_path: Path, content: str | bytes) -> list[str]:
    path = tmp_path / "e.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return [str(issue).replace(f"{path}", "e.yaml", 1) for issue in load_catalogue([path], POLICY_PATH).issues]


# --- the reworked messages, exact ------------------------------------------------------------

FORBIDDEN_LOW = "'payment-processor' (level absolute), 'stripe-webhook-handler' (level absolute), 'booking-confirmation' (level high), 'sms-notifications' (level high)"
ANY_LABEL = "all forbidden to the low tier: a pod with any label of a protected service counts as that service's, in any namespace"
SERVICES = ["payment-processor", "stripe-webhook-handler", "booking-confirmation", "sms-notifications"]


def pairs(*keys: str) -> str:
    return ", ".join(f"{key}={name}" for name in SERVICES for key in keys)


def not_in(key: str) -> str:
    return f"{{key: {key}, operator: NotIn, values: [{', '.join(SERVICES)}]}}"


# (id, file content, [exact issues, the file written as e.yaml])
MESSAGES = [
    (
        "name-in-words-not-a-regular-expression",
        with_line(1, "name: Booking_API\n"),
        ["e.yaml:1: name: [format] 'Booking_API' is not a valid name: use lowercase letters (a-z), digits and '-', "
         "starting and ending with a letter or digit, e.g. 'booking-api'"],
    ),
    (
        "name-with-nothing-to-suggest",
        with_line(1, "name: '--'\n"),
        ["e.yaml:1: name: [format] '--' is not a valid name: use lowercase letters (a-z), digits and '-', "
         "starting and ending with a letter or digit"],
    ),
    (
        "name-too-long-says-its-length",
        with_line(1, f"name: {'a' * 51}\n"),
        ["e.yaml:1: name: [range] the name is 51 characters long; a name is at most 50 characters (the Chaos Mesh "
         "object is named after it with a run suffix, within Kubernetes' 63); shorten it"],
    ),
    (
        # The whole namespace: every protected service, both label keys open; one fix, so one issue.
        "protected-reach-one-issue-for-one-fix",
        EXPERIMENT.replace(SELECTOR, "    selector: {namespaces: [notifications]}\n").replace("service: booking-api", "service: email-service"),
        [f"e.yaml:12: chaos.spec.selector: [protected-reach] could select a pod carrying {pairs('app', 'app.kubernetes.io/name')} "
         f"of protected services {FORBIDDEN_LOW}, {ANY_LABEL}; pin app, app.kubernetes.io/name in labelSelectors to your "
         f"service's values, or exclude them, e.g. expressionSelectors: [{not_in('app')}, {not_in('app.kubernetes.io/name')}]"],
    ),
    (
        "protected-reach-one-key-left-open",
        with_line(16, ""),
        [f"e.yaml:12: chaos.spec.selector: [protected-reach] could select a pod carrying {pairs('app.kubernetes.io/name')} "
         f"of protected services {FORBIDDEN_LOW}, {ANY_LABEL}; pin app.kubernetes.io/name in labelSelectors to your "
         f"service's value, or exclude them, e.g. expressionSelectors: [{not_in('app.kubernetes.io/name')}]"],
    ),
    (
        "protected-reach-pods-by-name",
        EXPERIMENT.replace(SELECTOR, "    selector:\n      pods: {booking: [booking-api-0]}\n"),
        [f"e.yaml:12: chaos.spec.selector: [protected-reach] could select a pod carrying {pairs('app', 'app.kubernetes.io/name')} "
         f"of protected services {FORBIDDEN_LOW}, {ANY_LABEL}; selector.pods names pods whose labels are only known at run "
         "time; select them by namespaces and labels instead"],
    ),
    (
        "not-utf-8",
        EXPERIMENT.replace("Kill one", "Kill \u00e9one").encode("latin-1"),
        ["e.yaml:3: [yaml] the file is not UTF-8 text: byte 0xe9 at column 13 is not valid UTF-8; save the file as UTF-8"],
    ),
    (
        "libyaml-error-in-one-line-at-its-line",
        with_line(13, "      namespaces: [booking\n"),
        ["e.yaml:14: [yaml] not valid YAML at column 21: did not find expected ',' or ']', while parsing a flow sequence "
         "started at line 13, column 19"],
    ),
    (
        "at-the-end-of-the-file",
        with_line(17, "    duration: '60s\n"),
        ["e.yaml:17: [yaml] not valid YAML at the end of the file: found unexpected end of stream, while scanning a quoted "
         "scalar started at line 17, column 15"],
    ),
    (
        "control-character",
        with_line(3, "title: Kill \x07one\n"),
        ["e.yaml:3: [yaml] not valid YAML at column 13: character #x0007 is refused (control characters are not allowed); remove it"],
    ),
    (
        # Once an uncaught ValueError that stopped `chaosctl validate` altogether.
        "a-value-its-tag-refuses",
        with_line(17, "    duration: !!int 60s\n"),
        ["e.yaml:17: [yaml] not valid YAML at column 15: '60s' cannot be read as !!int: invalid literal for int() with base 10: '60s'"],
    ),
    (
        "a-word-its-tag-refuses",
        with_line(3, "title: !!bool maybe\n"),
        ["e.yaml:3: [yaml] not valid YAML at column 8: 'maybe' cannot be read as !!bool"],
    ),
    ("empty-file", "", ["e.yaml: [one-experiment] the file is empty; write one experiment in it"]),
    ("only-comments", "# to do\n\n", ["e.yaml: [one-experiment] the file is empty; write one experiment in it"]),
    (
        "two-documents",
        EXPERIMENT + "---\nname: other\n",
        ["e.yaml:19: [one-experiment] a file holds exactly one experiment, found 2 documents; the second starts here"],
    ),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in MESSAGES], ids=[c[0] for c in MESSAGES])
def test_message(tmp_path, content, expected):
    assert issues_of(tmp_path, content) == expected


def test_an_empty_policy_says_so(tmp_path):
    path = write_yaml(tmp_path / "policy.yaml", "\n")
    assert [str(i) for i in load_policy(path)[1]] == [f"{path}: [type] the file is empty; write the safety policy in it"]


def test_a_policy_of_two_documents_points_at_the_second(tmp_path):
    path = write_yaml(tmp_path / "policy.yaml", "version: 1\n---\nversion: 1\n")
    assert [str(i) for i in load_policy(path)[1]] == [
        f"{path}:3: [yaml] a second YAML document starts here and this file is one document; remove it (and the '---' before it)"
    ]


def test_one_experiment_in_reach_of_one_service_keeps_its_own_wording(tmp_path):
    """One service, two keys open: the example excludes both keys (excluding one leaves the other open)."""
    absolute = ["payment-processor", "stripe-webhook-handler"]  # the other services the high tier may not touch, excluded
    selector = {"namespaces": ["notifications"], "expressionSelectors": [
        {"key": "app", "operator": "NotIn", "values": absolute}, {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": absolute}]}
    experiment = mutated(base_experiment(), {"tier": "high", "chaos.spec.action": "pod-failure", "target.service": "email-service",
                                             "chaos.spec.selector": selector})
    assert [i.message for i in load(tmp_path, experiment).issues if i.rule == "protected-reach"] == [
        "could select a pod carrying app=email-service, app.kubernetes.io/name=email-service of protected service 'email-service' "
        "(level medium, forbidden to the high tier): a pod with any of its labels counts as the service's, in any namespace; "
        "pin app, app.kubernetes.io/name in labelSelectors to your service's values, or exclude it, e.g. expressionSelectors: "
        "[{key: app, operator: NotIn, values: [email-service]}, {key: app.kubernetes.io/name, operator: NotIn, values: [email-service]}]"
    ]


# --- the line of each issue ------------------------------------------------------------------

# (id, file content, [(line, field, rule)])
LINES = [
    ("value", with_line(17, "    duration: 30m\n"), [(17, "chaos.spec.duration", "max-duration")]),
    ("mode", with_line(11, "    mode: all\n"), [(11, "chaos.spec.mode", "blast-radius-mode")]),
    ("top-level-value", with_line(2, "tier: extreme\n"), [(2, "tier", "enum")]),
    ("nested-value", with_line(6, "  service: nope\n"), [(6, "target.service", "unknown-service")]),
    ("flow-list", with_line(13, "      namespaces: [booking, payments]\n"), [(13, "chaos.spec.selector.namespaces", "allowed-namespace")]),
    # A key with dots in it, named in brackets.
    ("dotted-key", with_line(16, "        app.kubernetes.io/name: 5\n"), [(16, "chaos.spec.selector.labelSelectors[app.kubernetes.io/name]", "type")]),
    # A missing key: the line of the mapping it is missing from; a missing top-level key has none.
    ("missing-key", with_line(10, ""), [(9, "chaos.spec.action", "required")]),
    ("missing-top-level-key", with_line(4, ""), [(None, "hypothesis", "required")]),
    ("map-entry", EXPERIMENT + "thresholds:\n  availability:\n    limit: x\n", [(20, "thresholds[availability].limit", "type")]),
    ("map-entry-as-the-rules-name-it", EXPERIMENT + "thresholds:\n  latency:\n    limit: 1\n", [(19, "thresholds.latency", "unknown-threshold")]),
    ("merged-key", "base: &b {x: 1}\n" + EXPERIMENT.replace("  service: booking-api\n", "  <<: *b\n  service: booking-api\n"),
     [(1, "target.x", "unknown-field"), (1, "base", "unknown-field")]),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in LINES], ids=[c[0] for c in LINES])
def test_line(tmp_path, content, expected):
    path = write_yaml(tmp_path / "e.yaml", content)
    issues = load_catalogue([path], POLICY_PATH).issues
    assert sorted(((i.line, i.field, i.rule) for i in issues), key=str) == sorted(expected, key=str)


def test_a_duplicate_name_is_on_the_line_of_each_name(tmp_path):
    first = write_yaml(tmp_path / "a.yaml", EXPERIMENT)
    second = write_yaml(tmp_path / "b.yaml", "# the same experiment again\n\n" + EXPERIMENT)
    issues = load_catalogue([first, second], POLICY_PATH).issues
    assert [(Path(i.file).name, i.line, i.rule) for i in issues] == [("a.yaml", 1, "duplicate-name"), ("b.yaml", 3, "duplicate-name")]


def test_a_policy_issue_is_on_its_line(tmp_path):
    text = POLICY_PATH.read_text()
    path = write_yaml(tmp_path / "policy.yaml", text.replace("  check_interval: 10s\n", "  check_interval: soon\n"))
    line = text.splitlines().index("  check_interval: 10s") + 1
    assert [(i.line, i.field) for i in load_policy(path)[1]] == [(line, "safety.check_interval")]


def test_the_drill_issue_is_on_the_line_of_its_experiment(tmp_path):
    text = POLICY_PATH.read_text()
    path = write_yaml(tmp_path / "policy.yaml", text.replace("  experiment: database-failover", "  experiment: no-such-drill"))
    line = text.splitlines().index("  experiment: database-failover   # a high-tier experiment of the catalogue") + 1
    issues = load_catalogue(None, path).issues
    assert [(i.file, i.line, i.field, i.rule) for i in issues] == [(str(path), line, "disaster_recovery.experiment", "drill-experiment")]


def test_a_field_is_found_through_aliases_lists_and_dotted_keys(tmp_path):
    text = "a: &x\n  b:\n    - 1\n    - c: 2\nd: *x\ne.f:\n  g: 3\ne:\n  f: 4\n"
    document = read_documents(write_yaml(tmp_path / "x.yaml", text))[0]
    fields = ["a", "a.b[1].c", "d.b[0]", "a.b[5]", "e.f.g", "e.f", "e.h", "nope", ""]
    assert [document.line_of(f) for f in fields] == [1, 4, 3, 2, 7, 6, 8, None, None]


# --- the formats -----------------------------------------------------------------------------


@pytest.fixture
def two_files(tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", with_line(17, "    duration: 30m\n").replace("name: booking-api-pod-kill", "name: bad"))
    broken = write_yaml(tmp_path / "broken.yaml", "name: [x\ntier: low\n")
    good = write_yaml(tmp_path / "good.yaml", EXPERIMENT)
    return bad, broken, good


def validate(capsys, *args: str) -> tuple[int, str]:
    code = main(["--policy", str(POLICY_PATH), "validate", *args])
    return code, capsys.readouterr().out


def test_junit_has_a_test_case_per_file_and_a_failure_per_file_with_issues(capsys, two_files):
    bad, broken, good = two_files
    code, out = validate(capsys, "--format", "junit", str(bad), str(broken), str(good))
    assert code == 1
    root = ET.fromstring(out)
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("chaosctl validate", "4", "2", "0")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("chaosctl.validate", str(POLICY_PATH)), ("chaosctl.validate", str(bad)), ("chaosctl.validate", str(broken)), ("chaosctl.validate", str(good))
    ]
    failures = {c.get("name"): c.findall("failure") for c in cases}
    assert failures[str(POLICY_PATH)] == [] and failures[str(good)] == []
    [duration] = failures[str(bad)]
    assert duration.get("type") == "max-duration"
    assert duration.get("message") == "[max-duration] 30m exceeds the low tier's maximum of 10m; shorten it or move the experiment to a tier that allows it"
    assert duration.text == (
        f"{bad}:17: chaos.spec.duration: [max-duration] 30m exceeds the low tier's maximum of 10m; shorten it or move the "
        "experiment to a tier that allows it"
    )
    [not_yaml] = failures[str(broken)]
    assert (not_yaml.get("type"), not_yaml.get("message")) == (
        "yaml", "[yaml] not valid YAML at column 5: did not find expected ',' or ']', while parsing a flow sequence started at line 1, column 7"
    )


def test_junit_lists_every_issue_of_a_file_and_names_the_first(tmp_path):
    issues = [ValidationIssue("e.yaml", "name", "format", "first", 1), ValidationIssue("e.yaml", "", "yaml", "second")]
    failure = ET.fromstring(junit_report(["e.yaml"], issues)).find("testsuite/testcase/failure")
    assert (failure.get("type"), failure.get("message"), failure.text) == ("format", "[format] first", "e.yaml:1: name: [format] first\ne.yaml: [yaml] second")


def test_github_annotations_then_the_summary(capsys, two_files):
    bad, broken, good = two_files
    code, out = validate(capsys, "--format", "github", str(bad), str(broken), str(good))
    assert code == 1
    assert out.splitlines() == [
        f"::error file={bad},line=17,title=max-duration::chaos.spec.duration: 30m exceeds the low tier's maximum of 10m; "
        "shorten it or move the experiment to a tier that allows it",
        f"::error file={broken},line=2,title=yaml::not valid YAML at column 5: did not find expected ',' or ']', while parsing "
        "a flow sequence started at line 1, column 7",
        "3 file(s), 1 valid experiment(s): INVALID: 2 issue(s)",
    ]


def test_github_escapes_what_a_workflow_command_cannot_hold():
    issue = ValidationIssue("dir,a/b:c.yaml", "", "yaml", "100% sure\r\nnot")
    assert github_annotation(issue) == "::error file=dir%2Ca/b%3Ac.yaml,title=yaml::100%25 sure%0D%0Anot"


def test_text_and_json_carry_the_line(capsys, two_files):
    bad, _, good = two_files
    code, out = validate(capsys, str(bad), str(good))
    assert (code, out.splitlines()[0]) == (1, f"{bad}:17: chaos.spec.duration: [max-duration] 30m exceeds the low tier's maximum "
                                              "of 10m; shorten it or move the experiment to a tier that allows it")
    code, out = validate(capsys, "--format", "json", str(bad), str(good))
    assert [(i["line"], i["field"]) for i in json.loads(out)["issues"]] == [(17, "chaos.spec.duration")]


def test_a_valid_catalogue_exits_0_in_every_format(capsys, two_files):
    _, _, good = two_files
    for form in ("text", "json", "junit", "github"):
        assert validate(capsys, "--format", form, str(good))[0] == 0


# --- properties ------------------------------------------------------------------------------

# Every character, lone surrogates and controls included.
ANY_TEXT = st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.sampled_from("\x00\x07\r\n%,:")))
_UNESCAPE = {"%25": "%", "%0D": "\r", "%0A": "\n", "%3A": ":", "%2C": ","}


def unescape(text: str) -> str:
    """What the GitHub runner does with an escaped value (one pass, left to right)."""
    return re.sub("%25|%0D|%0A|%3A|%2C", lambda m: _UNESCAPE[m.group()], text)


@settings(max_examples=200, deadline=None)
@given(file=ANY_TEXT, rule=ANY_TEXT, message=ANY_TEXT, line=st.one_of(st.none(), st.integers(1, 10**6)))
def test_a_github_annotation_is_one_line_that_reads_back(file, rule, message, line):
    annotation = github_annotation(ValidationIssue(file, "", rule, message, line))
    assert "\n" not in annotation and "\r" not in annotation
    head, _, data = annotation.removeprefix("::error ").partition("::")
    properties = dict(p.split("=", 1) for p in head.split(","))
    assert unescape(data) == message
    assert (unescape(properties["file"]), unescape(properties["title"]), properties.get("line")) == (file, rule, None if line is None else str(line))
    assert re.fullmatch(r"([^%]|%25|%0D|%0A)*", data)


def readable(text: str) -> str:
    """The oracle: what XML 1.0 cannot hold, as its escape; line ends as an XML parser gives them."""
    def char(c: str) -> str:
        code = ord(c)
        allowed = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000
        return c if allowed else (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(char(c) for c in text)


@settings(max_examples=200, deadline=None)
@given(file=ANY_TEXT, rule=ANY_TEXT, message=ANY_TEXT)
def test_junit_is_well_formed_xml_for_any_message(file, rule, message):
    report = junit_report([file], [ValidationIssue(file, "", rule, message)])
    case = ET.fromstring(report.encode("utf-8")).find("testsuite/testcase")
    failure = case.find("failure")
    assert case.get("name") == readable(file)
    assert (failure.get("type"), failure.get("message")) == (readable(rule), readable(f"[{rule}] {message}"))
    # In element text an XML parser reads \r\n and \r as \n.
    assert (failure.text or "") == readable(str(ValidationIssue(file, "", rule, message))).replace("\r\n", "\n").replace("\r", "\n")


# Pieces of YAML, good and broken, that a file of any shape is made of.
YAML_PIECES = st.lists(st.sampled_from([
    "name: x\n", "a: [\n", "- 1\n", "\t", "!!int ", "!!bool ", "!!timestamp ", "&a ", "*a ", "<<: *a\n", "---\n", "? ", ": ",
    "'", '"', "{", "}", "\x07", "\ufeff", "  ", "\n", "x", "1", "~", "chaos:\n  spec:\n",
]), max_size=30).map(lambda pieces: "".join(pieces).encode())


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), YAML_PIECES))
@example(raw=b"---\n\xef\xbb\xbf")  # PyYAML marks this empty document on a line the file does not have
def test_any_file_is_reported_never_raised_and_its_lines_are_in_the_file(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("any") / "e.yaml"
    path.write_bytes(raw)
    issues = load_catalogue([path], POLICY_PATH).issues + load_policy(path)[1]
    assert issues
    last = raw.count(b"\n") + 1
    assert all(i.line is None or 1 <= i.line <= last for i in issues), issues
