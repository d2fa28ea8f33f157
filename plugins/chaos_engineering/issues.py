"""Validation issues: what is wrong, in which file, at which field and line, against which rule; and how CI reads them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from pydantic import BaseModel, ValidationError

from chaos_engineering.chaosmesh.spec_issues import issues_from_validation_error


@dataclass(frozen=True)
class ValidationIssue:
    """One broken rule. `field` is a dotted path inside the file (`chaos.spec.duration`); `line`
    counts from 1, None where the file has no line for it (a file it cannot read, a field of the
    whole file)."""

    file: str
    field: str
    rule: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        where = f"{where}: {self.field}" if self.field else where
        return f"{where}: [{self.rule}] {self.message}"

    def as_dict(self) -> dict[str, str | int | None]:
        return asdict(self)


def issues_from_pydantic(file: str, model: type[BaseModel], error: ValidationError) -> list[ValidationIssue]:
    """Every error pydantic found in one of our files, with the same wording as Chaos Mesh specs."""
    return [ValidationIssue(file, i.field, i.rule, i.message) for i in issues_from_validation_error(model, error, root="")]


def with_lines(issues: Iterable[ValidationIssue], line_of: Callable[[str], int | None]) -> list[ValidationIssue]:
    """The issues, each without a line given the line `line_of` finds for its field."""
    return [issue if issue.line is not None else replace(issue, line=line_of(issue.field)) for issue in issues]


# --- for CI: JUnit XML and GitHub workflow commands ----------------------------------------------

# What XML 1.0 cannot hold even escaped: C0 controls but tab and newlines, surrogates, U+FFFE/FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """`text` with each character XML 1.0 forbids written as its escape (`\\x07`)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def junit_report(files: Iterable[str], issues: list[ValidationIssue], suite: str = "chaosctl validate") -> str:
    """A JUnit XML report: one test case per file checked (and per other file an issue names), one
    failure per file with issues: its first issue as the message, every issue a line of its text."""
    names = list(dict.fromkeys([*files, *(i.file for i in issues)]))
    by_file = {name: [i for i in issues if i.file == name] for name in names}
    failed = sum(1 for found in by_file.values() if found)
    counts = {"tests": str(len(names)), "failures": str(failed), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", name=suite, **counts)
    testsuite = ET.SubElement(root, "testsuite", name=suite, **counts)
    for name, found in by_file.items():
        case = ET.SubElement(testsuite, "testcase", classname="chaosctl.validate", name=_xml_text(name), file=_xml_text(name))
        if found:
            first = found[0]
            failure = ET.SubElement(case, "failure", message=_xml_text(f"[{first.rule}] {first.message}"), type=_xml_text(first.rule))
            failure.text = _xml_text("\n".join(str(i) for i in found))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _github_data(text: str) -> str:
    # GitHub's own escaping (actions/toolkit, command.ts `escapeData`): the runner unescapes these.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(issue: ValidationIssue) -> str:
    """The issue as a GitHub Actions `::error` workflow command: an annotation on its file and line."""
    properties = [f"file={_github_property(issue.file)}"]
    if issue.line is not None:
        properties.append(f"line={issue.line}")
    properties.append(f"title={_github_property(issue.rule)}")
    message = f"{issue.field}: {issue.message}" if issue.field else issue.message
    return f"::error {','.join(properties)}::{_github_data(message)}"
