"""Slack and e-mail notifications through a local webhook receiver and a local SMTP server, and
what a dead or silent channel does to the caller: nothing but a logged warning."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.notify import Channels, ChaosNotifier, announce
from chaos_engineering.notify.slack import ChaosSlackNotifier
from chaos_engineering.operators.approval import human_approval
from chaos_engineering.policy import Tier
from chaos_engineering.render import render_chaos_object
from tests.integration.receivers import WEBHOOK_PATH, SilentServer, SlackReceiver, SmtpServer, free_port

CATALOGUE = load_catalogue()
POLICY = CATALOGUE.policy
DAG_ID, RUN_ID = "chaos_medium_risk", "manual__2026-03-01T02:00:00+00:00"
BASE_URL = "https://airflow.example.com/chaos"
RUN_URL = f"{BASE_URL}/dags/{DAG_ID}/runs/{quote(RUN_ID, safe='')}"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

SLACK_ONLY = Channels(smtp_conn_id=None, pushgateway_conn_id=None)
EMAIL_ONLY = Channels(slack_conn_id=None, pushgateway_conn_id=None)


def make_plan(name: str = "booking-api-memory-pressure") -> dict:
    experiment = CATALOGUE.get(name)
    return {
        "experiment": experiment.name,
        "tier": experiment.tier.value,
        "title": experiment.title,
        "hypothesis": experiment.hypothesis,
        "target_service": experiment.target_service,
        "kind": experiment.kind.value,
        "manifest": render_chaos_object(experiment, POLICY, dag_id=DAG_ID, run_id=RUN_ID),
        "duration_s": 120.0,
        "thresholds": {n: t.model_dump(mode="json") for n, t in POLICY.safety.thresholds.items()},
        "dry_run": False,
    }


PLAN = make_plan()
NOW = time.time()
FAULT = {"kind": PLAN["kind"], "name": PLAN["manifest"]["metadata"]["name"], "namespace": PLAN["manifest"]["metadata"]["namespace"], "injected_at": NOW - 42.0}
BREACH = {
    "threshold": "p95_latency",
    "rule": "at_most",
    "value": 4180.0,
    "baseline": 212.0,
    "limit": 3000.0,
    "bound": 3000.0,
    "at": NOW,
    "message": "p95_latency = 4180 ms is above its bound 3000 ms",
}
RECOVERY = {
    "immediate": {"stage": "immediate", "status": "recovered", "deadline_s": 60.0, "at": NOW + 20, "time_to_recover_s": 17.5, "pending": []},
    "short_term": {"stage": "short_term", "status": "recovered", "deadline_s": 300.0, "at": NOW + 60, "time_to_recover_s": 58.25, "pending": []},
    "business": {"stage": "business", "status": "deadline_missed", "deadline_s": 900.0, "at": NOW + 900, "time_to_recover_s": 900.0,
                 "pending": ["booking_rate 11.2 below 12.6"]},
}


def context(task=None) -> dict:
    """What a task's context offers a notifier: the run, the task instance (XCom) and the task."""
    ti = SimpleNamespace(task_id=getattr(task, "task_id", "notify"), map_index=-1, xcom_pull=lambda task_ids, key="return_value": PLAN if task_ids == "plan" else None)
    return {"dag_run": SimpleNamespace(dag_id=DAG_ID, run_id=RUN_ID), "ti": ti, "task_instance": ti, "task": task}


def slack_text(payload: dict) -> str:
    """Every text of a webhook payload (fallback and blocks), as Slack would render it."""
    texts: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    texts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return "\n".join(texts)


def assert_names_the_run(text: str, plan: dict = PLAN) -> None:
    assert plan["tier"] in text
    assert plan["experiment"] in text
    assert plan["target_service"] in text
    assert RUN_URL in text, "the message links the run's page in the UI (base URL path kept, run id quoted)"


@pytest.fixture(autouse=True)
def airflow_base_url(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    for name in ("AIRFLOW_CONN_SLACK_CHAOS", "AIRFLOW_CONN_SMTP_DEFAULT", "AIRFLOW_CONN_PUSHGATEWAY_DEFAULT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack(monkeypatch):
    with SlackReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_CHAOS", receiver.connection())
        yield receiver


@pytest.fixture
def smtp(monkeypatch):
    with SmtpServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection())
        yield server


# --- Slack: one message per lifecycle event --------------------------------------------------


def test_approval_request_links_the_approval_page(slack):
    """As a human-in-the-loop task's notifier: the approver gets the required-actions page."""
    approval = human_approval(POLICY, Tier.MEDIUM, "sre")
    notifier = ChaosNotifier(event="approval_requested", extra={"role": "SRE", "timeout_s": 3600}, channels=SLACK_ONLY)
    notifier(context(approval))

    assert slack.paths == [WEBHOOK_PATH]
    text = slack_text(slack.payloads[0])
    assert_names_the_run(text)
    assert f"{RUN_URL}/tasks/approve_sre/required_actions?map_index=-1" in text
    assert "Approval requested" in text and "waits for the SRE approval" in text
    assert PLAN["hypothesis"] in text and PLAN["manifest"]["metadata"]["name"] in text
    assert "3600.0 s" in text


def test_started_names_the_fault_and_when_it_ends(slack):
    outcome = announce("started", context=context(), plan=PLAN, extra={"fault": FAULT}, channels=SLACK_ONLY)

    assert outcome == {"slack": "sent", "email": "disabled", "metrics": "disabled"}
    text = slack_text(slack.payloads[0])
    assert_names_the_run(text)
    assert "Fault injected" in text and f"{FAULT['namespace']}/{FAULT['name']}" in text
    assert time.strftime("%H:%M:%S", time.gmtime(FAULT["injected_at"])) in text
    assert time.strftime("%H:%M:%S", time.gmtime(FAULT["injected_at"] + 120)) in text, "when Chaos Mesh ends it by itself"


def test_breach_and_kill_gives_the_numbers(slack):
    removed = NOW + 0.4
    announce("breach_and_kill", context=context(), plan=PLAN, breach=BREACH, extra={"fault": FAULT, "removal_requested_at": removed}, channels=SLACK_ONLY)

    payload = slack.payloads[0]
    text = slack_text(payload)
    assert_names_the_run(text)
    assert "Safety breach, fault removed" in payload["blocks"][0]["text"]["text"]
    assert "p95_latency (at_most 3000)" in text
    assert "4180 ms" in text and "212 ms" in text and "3000 ms" in text, "measured, baseline and bound, with the unit"
    assert "42.0 s" in text, "detected 42 s after injection"
    assert "0.4 s after detection" in text


def test_breach_whose_removal_failed_calls_for_the_emergency_stop(slack):
    announce("breach_and_kill", context=context(), plan=PLAN, breach=BREACH,
             extra={"fault": FAULT, "removal_error": "(503) API server unavailable"}, channels=SLACK_ONLY)

    text = slack_text(slack.payloads[0])
    assert "REMOVAL FAILED" in text and "(503) API server unavailable" in text
    assert "emergency stop" in text


def test_emergency_stop_lists_every_removed_fault(slack):
    other = make_plan("web-frontend-latency")
    removed = [PLAN["manifest"], other["manifest"]]
    stop_run = {"dag_run": SimpleNamespace(dag_id="chaos_emergency_stop", run_id="manual__2026-03-01T02:01:00+00:00")}
    announce("emergency_stop", context=stop_run, extra={"removed": removed, "requested_by": "alice", "reason": "bookings dropping"}, channels=SLACK_ONLY)

    text = slack_text(slack.payloads[0])
    assert "Emergency stop: 2 fault(s) removed" in text
    for plan in (PLAN, other):
        assert plan["manifest"]["metadata"]["name"] in text and plan["experiment"] in text
        assert f"({plan['tier']} tier), target {plan['target_service']}" in text
    assert f"run {DAG_ID} / {RUN_ID}" in text, "the run each fault belonged to"
    assert f"{BASE_URL}/dags/chaos_emergency_stop/runs/" in text
    assert "alice" in text and "bookings dropping" in text


def test_recovery_verdict_per_stage(slack):
    announce("recovery_verdict", context=context(), plan=PLAN, extra={"recovery": RECOVERY}, channels=SLACK_ONLY)

    text = slack_text(slack.payloads[0])
    assert_names_the_run(text)
    assert "Recovery incomplete" in text and "2 of 3" in text
    assert "immediate: recovered after 17.5 s (deadline 60 s)" in text
    assert "short_term: recovered after 58.2 s (deadline 300 s)" in text or "short_term: recovered after 58.3 s" in text
    assert "business: missed its deadline 900 s (still: booking_rate 11.2 below 12.6)" in text


def finished_result(verdict: str = "broken", reason: str = "safety breach: p95_latency = 4180 ms is above its bound 3000 ms") -> dict:
    return {
        "dag_id": DAG_ID,
        "run_id": RUN_ID,
        "experiment": {k: v for k, v in PLAN.items() if k != "manifest"},
        "fault": FAULT,
        "removal": {"removed": [FAULT["name"]], "removed_at": NOW + 1},
        "recovery": RECOVERY,
        "verdict": verdict,
        "verdict_reason": reason,
    }


REPORT = {
    "impact_score": {"value": 63.5, "basis": "booking_rate used 127% of its headroom", "components": {}},
    "system_health_score": {"value": 71.2, "basis": "", "components": {}},
    "breaches": [{"threshold": "p95_latency", "time_to_detect_s": 6.5}],
    "findings": [{"id": "F1", "severity": "critical", "title": "business recovery missed its 900 s deadline"}],
}
REPORT_URL = f"file:///var/chaos/reports/{DAG_ID}/2026/03/{RUN_ID}/report.html"


def test_finished_with_verdict_scores_and_report_link(slack):
    result = finished_result(reason="p95 < bound & <b>bold</b>")
    announce("finished", context=context(), result=result, extra={"report": REPORT, "report_url": REPORT_URL, "report_pdf": PDF}, channels=SLACK_ONLY)

    payload = slack.payloads[0]
    text = slack_text(payload)
    assert_names_the_run(text)
    assert "Finished, hypothesis broken" in text
    assert "63.5 / 100" in text and "71.2 / 100" in text and "6.5 s" in text
    assert f"<{REPORT_URL}|" in text, "the report link, as a Slack link"
    assert "business recovery missed its 900 s deadline" in text
    assert "p95 &lt; bound &amp; &lt;b&gt;bold&lt;/b&gt;" in text, "mrkdwn control characters escaped"
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


def test_slack_notifier_as_a_failure_callback(slack):
    ChaosSlackNotifier(event="started", extra={"fault": FAULT})(context())

    text = slack_text(slack.payloads[0])
    assert_names_the_run(text)
    assert "Fault injected" in text


def test_a_refused_post_is_logged_without_the_webhook_url(monkeypatch, caplog):
    with SlackReceiver(status=500, body=b"invalid_token") as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_CHAOS", receiver.connection())
        with caplog.at_level(logging.INFO):
            outcome = announce("started", context=context(), plan=PLAN, extra={"fault": FAULT}, channels=SLACK_ONLY)

    assert outcome["slack"] == "failed"
    assert len(receiver.payloads) == 1, "one try: no retry on the safety path"
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("chaos_engineering")]
    assert any("Slack notification 'started' not sent" in w and "500" in w for w in warnings), warnings
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert WEBHOOK_PATH not in everything and "s3cr3t" not in everything


# --- e-mail -----------------------------------------------------------------------------------


def test_finished_email_carries_the_summary_and_the_pdf(smtp):
    outcome = announce("finished", context=context(), result=finished_result(),
                       extra={"report": REPORT, "report_url": REPORT_URL, "report_pdf": PDF}, channels=EMAIL_ONLY)

    assert outcome["email"] == "sent"
    [(sender, recipients, message)] = smtp.messages
    assert sender == "chaos@example.com" and recipients == ["sre@example.com", "oncall@example.com"]
    assert message["Subject"] == f"[chaos] Finished, hypothesis broken: {PLAN['experiment']} (medium tier)"
    body = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    assert_names_the_run(body.replace("&amp;", "&"))
    assert "safety breach: p95_latency = 4180 ms is above its bound 3000 ms" in body
    assert "63.5 / 100" in body and REPORT_URL in body
    [attachment] = [p for p in message.walk() if p.get_filename()]
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_payload(decode=True) == PDF


def test_breach_is_mailed_and_start_is_not(smtp):
    started = announce("started", context=context(), plan=PLAN, extra={"fault": FAULT}, channels=EMAIL_ONLY)
    breach = announce("breach_and_kill", context=context(), plan=PLAN, breach=BREACH, extra={"fault": FAULT, "removal_requested_at": NOW + 1}, channels=EMAIL_ONLY)

    assert started["email"] == "skipped" and breach["email"] == "sent"
    [(_, _, message)] = smtp.messages
    assert message["Subject"].startswith("[chaos] Safety breach, fault removed")
    body = message.get_body(("html",)).get_content()
    assert "4180 ms" in body and "3000 ms" in body
    assert not [p for p in message.walk() if p.get_filename()], "no PDF outside `finished`"


def test_a_connection_without_recipients_disables_email(smtp, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.connection(to=""))
    outcome = announce("finished", context=context(), result=finished_result(), channels=EMAIL_ONLY)

    assert outcome["email"] == "disabled" and smtp.messages == []


# --- a channel that is down never fails nor delays the caller -----------------------------------

BOUND_S = 4.0


@pytest.mark.parametrize("failure", ["silent", "refused"])
@pytest.mark.parametrize("event", ["breach_and_kill", "finished"])
def test_dead_channels_neither_raise_nor_delay(monkeypatch, caplog, failure, event):
    """Every channel down at once. `silent` servers accept and never answer (each client call
    waits its whole timeout); `refused` ports have nothing listening."""
    with SilentServer() as slack_host, SilentServer() as smtp_host, SilentServer() as pushgateway_host:
        ports = [s.port for s in (slack_host, smtp_host, pushgateway_host)] if failure == "silent" else [free_port() for _ in range(3)]
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_CHAOS", json.dumps({"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{ports[0]}{WEBHOOK_PATH}"}))
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": ports[1],
             "extra": {"disable_ssl": True, "disable_tls": True, "to": "sre@example.com", "timeout": 30, "retry_limit": 5}}))
        monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_DEFAULT", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{ports[2]}"}))
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            outcome = announce(event, context=context(), plan=PLAN, result=finished_result(), breach=BREACH,
                               extra={"fault": FAULT, "removal_requested_at": NOW + 1, "report_pdf": PDF})
            took = time.monotonic() - started

    assert took < BOUND_S, f"announce took {took:.2f} s with every channel {failure}"
    assert set(outcome) == {"slack", "email", "metrics"}
    assert all(status in ("failed", "timed_out") for status in outcome.values()), outcome
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert WEBHOOK_PATH not in everything


def test_missing_connections_disable_each_channel_quietly(caplog):
    with caplog.at_level(logging.INFO, logger="chaos_engineering.notify"):
        started = time.monotonic()
        first = announce("breach_and_kill", context=context(), plan=PLAN, breach=BREACH, channels=Channels(slack_conn_id="slack_absent", smtp_conn_id="smtp_absent", pushgateway_conn_id="pushgateway_absent"))
        second = announce("breach_and_kill", context=context(), plan=PLAN, breach=BREACH, channels=Channels(slack_conn_id="slack_absent", smtp_conn_id="smtp_absent", pushgateway_conn_id="pushgateway_absent"))

    assert first == second == {"slack": "disabled", "email": "disabled", "metrics": "disabled"}
    assert time.monotonic() - started < BOUND_S
    said = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(said) == 3 and all(r.levelno == logging.INFO for r in said), "once per connection, at info"


def test_a_bad_call_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING):
        assert announce("no_such_event", plan=PLAN) == {"error": "failed"}
        assert announce("breach_and_kill", plan={"experiment": None}, breach=None, channels=SLACK_ONLY)["slack"] == "disabled"
    assert any("no_such_event" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("channel", ["slack", "email", "metrics"])
def test_each_channel_bounds_its_own_wait(monkeypatch, channel):
    """Without `announce`'s budget around it, a silent server still costs a channel at most its
    3 s call timeout, whatever the connection asks for (the SMTP extras ask for 30 s and 5 retries)."""
    from chaos_engineering.notify import email, metrics, slack
    from chaos_engineering.notify.messages import build

    message = build("finished", context=context(), result=finished_result())
    with SilentServer() as silent:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_CHAOS", json.dumps({"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{silent.port}{WEBHOOK_PATH}"}))
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": silent.port,
             "extra": {"disable_ssl": True, "disable_tls": True, "to": "sre@example.com", "timeout": 30, "retry_limit": 5}}))
        monkeypatch.setenv("AIRFLOW_CONN_PUSHGATEWAY_DEFAULT", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{silent.port}"}))
        send = {
            "slack": lambda: slack.send_message(message),
            "email": lambda: email.send_message(message, attachments={"report.pdf": PDF}),
            "metrics": lambda: metrics.push("breach_and_kill", plan=PLAN, breach=BREACH, extra={"removal_requested_at": NOW}),
        }[channel]
        started = time.monotonic()
        status = send()
        took = time.monotonic() - started

    assert status == "failed"
    assert 2.5 < took < 3.6, f"{channel} waited {took:.2f} s on a silent server"
