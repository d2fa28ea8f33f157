"""Every alert's runbook link lands on a section of docs/RUNBOOK.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_runbook_link_has_its_section():
    rules = yaml.safe_load((ROOT / "include" / "prometheus" / "chaos-rules.yml").read_text())
    links = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert len(links) >= 15
    present = anchors((ROOT / "docs" / "RUNBOOK.md").read_text())
    missing = [link for link in links if link.split("#", 1)[1] not in present or not link.startswith("docs/RUNBOOK.md#")]
    assert missing == []
