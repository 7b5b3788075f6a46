"""Test the shipped alerts with promtool, the tool Prometheus users test rules with.

    python3 scripts/test_alerts.py [PROMTOOL]

promtool reads plain rule files, not the Prometheus Operator's PrometheusRule, so the
rule groups are taken out of manifests/overlays/monitoring/prometheusrule.yaml first:
its `spec:` is a rule file indented by two spaces, and the last key of the document.
The groups go to a temporary directory with the unit tests of tests/alerts/ (whose
`rule_files` name ci-pod-webhook.rules.yaml), then

    promtool check rules ci-pod-webhook.rules.yaml
    promtool test rules tests/alerts/*.test.yaml

The exit status is promtool's first failure, or 0. Standard library only: CI runs it
before any Python environment exists. tests/integration/manifests.rs checks that every
alert has a test that fires it and one that keeps it quiet.
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULE = ROOT / "manifests/overlays/monitoring/prometheusrule.yaml"
TESTS = ROOT / "tests/alerts"
RULES_FILE = "ci-pod-webhook.rules.yaml"


def rule_groups(text: str) -> str:
    """The PrometheusRule's spec as a rule file: the lines after `spec:`, dedented."""
    lines = text.splitlines()
    try:
        start = lines.index("spec:")
    except ValueError:
        sys.exit(f"{RULE}: no top-level `spec:` line")
    out = []
    for number, line in enumerate(lines[start + 1 :], start + 2):
        if line.strip() and not line.startswith("  "):
            sys.exit(f"{RULE}:{number}: `spec:` must be the last top-level key")
        out.append(line[2:])
    return "\n".join(out) + "\n"


def main() -> int:
    promtool = sys.argv[1] if len(sys.argv) > 1 else "promtool"
    if shutil.which(promtool) is None:
        sys.exit(f"{promtool} not found: install it (Debian: apt-get install prometheus)")
    tests = sorted(TESTS.glob("*.test.yaml"))
    if not tests:
        sys.exit(f"no *.test.yaml in {TESTS}")
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        (work / RULES_FILE).write_text(rule_groups(RULE.read_text()))
        for test in tests:
            shutil.copy(test, work / test.name)
        for command in (
            [promtool, "check", "rules", RULES_FILE],
            [promtool, "test", "rules", *(t.name for t in tests)],
        ):
            print("+", " ".join(command), flush=True)
            status = subprocess.run(command, cwd=work).returncode
            if status != 0:
                return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
