"""Suite-wide pytest setup: the library on the path, and a loud count of what ran and skipped."""

from __future__ import annotations

from collections import Counter


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    ran = sum(
        len(stats.get(key, [])) for key in ("passed", "failed", "error", "xfailed", "xpassed")
    )
    skipped = stats.get("skipped", [])
    terminalreporter.section("modeldrop test count")
    terminalreporter.write_line(f"RAN: {ran}   SKIPPED: {len(skipped)}")
    reasons = Counter()
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"  SKIPPED {count} x {reason}")
