"""packaging/prometheus: the alert rules pass promtool's check and their own
unit tests (promtool test rules), and the rules and the Grafana dashboard use
only the helper's metrics as docs/internals.md names them (issue 21), the
client library's process metrics, `up` and the rules' own records."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DIR = Path(__file__).resolve().parents[2] / "packaging" / "prometheus"
RULES = DIR / "slurmjwt.rules.yml"
RULE_TESTS = DIR / "slurmjwt.rules.test.yml"
DASHBOARD = DIR / "slurmjwt-dashboard.json"

COUNTERS = ("slurmjwt_tokens_issued_total", "slurmjwt_requests_refused_total",
            "slurmjwt_rate_limited_total", "slurmjwt_audit_lines_dropped_total",
            "slurmjwt_reload_failures_total", "slurmjwt_name_service_errors_total")
GAUGES = ("slurmjwt_key_info", "slurmjwt_key_loaded_timestamp_seconds")
HISTOGRAMS = ("slurmjwt_request_duration_seconds", "slurmjwt_name_service_duration_seconds")
# prometheus_client's ProcessCollector on Linux.
PROCESS = ("process_virtual_memory_bytes", "process_resident_memory_bytes",
           "process_start_time_seconds", "process_cpu_seconds_total", "process_open_fds",
           "process_max_fds")
HELPER_METRICS = frozenset((*COUNTERS, *GAUGES, *PROCESS, "up",
                            *(f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum",
                                                                      "_count"))))
# Labels the issue gives the helper's metrics, and what Prometheus adds.
LABELS = frozenset(("alg", "caller", "reason", "kid", "le", "instance", "job"))

FUNCTIONS = frozenset((
    "abs", "absent", "avg", "avg_over_time", "ceil", "changes", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "increase", "irate",
    "label_values", "max", "max_over_time", "min", "min_over_time", "rate", "resets", "round",
    "scalar", "sort", "sum", "sum_over_time", "time", "topk", "vector"))
KEYWORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "and",
                      "or", "unless", "bool", "offset"))


def metric_names(expr: str) -> set[str]:
    """Given a PromQL expression, return the metric names it selects: every
    identifier that is not inside quotes, label braces, a range, or a
    grouping clause, and is neither a function nor a keyword."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if word in FUNCTIONS or word in KEYWORDS:
            continue
        names.add(word)
    return names


def grouping_labels(expr: str) -> set[str]:
    found: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        found |= {label.strip() for label in group.split(",") if label.strip()}
    return found


def rules() -> list[dict[str, str]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            # label_values(SELECTOR, LABEL): the selector is the expression.
            query = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert query, var["query"]
            exprs.append(query.group(1))
    return exprs


def test_metric_names_finds_selectors_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{x="b c"}[5m]))) '
            '> on(instance) group_left scalar(ns:rec) and b offset 1d')
    assert metric_names(expr) == {"a_bucket", "ns:rec", "b"}
    assert grouping_labels(expr) == {"le", "instance"}


def test_rules_use_only_the_helpers_metrics_and_their_own_records() -> None:
    records = {r["record"] for r in rules() if "record" in r}
    assert records
    for rule in rules():
        unknown = metric_names(rule["expr"]) - HELPER_METRICS - records
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
        assert grouping_labels(rule["expr"]) <= LABELS, rule["expr"]


def test_dashboard_uses_only_the_helpers_metrics() -> None:
    exprs = dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= HELPER_METRICS, used - HELPER_METRICS
    for expr in exprs:
        assert grouping_labels(expr) <= LABELS, expr
    # Every one of the helper's own metrics has a place on it.
    assert {*COUNTERS, *GAUGES, *(h + "_bucket" for h in HISTOGRAMS)} <= used


def test_every_alert_the_issue_asks_for_is_there() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert {"SlurmjwtHelperDown", "SlurmjwtHelperAbsent", "SlurmjwtRequestsFailing",
            "SlurmjwtRefusalsAboveNormal", "SlurmjwtNameServiceErrors", "SlurmjwtReloadFailed",
            "SlurmjwtKeyOlderThanRotationPeriod", "SlurmjwtLatencyOverLoginBudget"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    # Every alert has a test in the promtool test file.
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert set(alerts) <= tested, set(alerts) - tested


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="needs promtool (Debian package prometheus)")
def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=DIR,
                            capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
