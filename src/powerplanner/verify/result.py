"""What a check says: pass, fail or skip (a prerequisite failed), why, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # not run because a check it depends on failed; counts as not passed


@dataclass(frozen=True)
class CheckResult:
    """One check. ``details`` are the facts behind the verdict (one line each); ``fix`` says what to do
    when it did not pass, so a failing report is a to-do list rather than a puzzle."""

    name: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()
    fix: str | None = None

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status.value, "summary": self.summary,
                               "details": list(self.details)}
        if self.fix and not self.passed:
            out["fix"] = self.fix
        return out


def passed(name: str, summary: str, details: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(name, Status.PASS, summary, details)


def failed(name: str, summary: str, fix: str, details: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(name, Status.FAIL, summary, details, fix)


def skipped(name: str, because: str) -> CheckResult:
    return CheckResult(name, Status.SKIP, f"not checked: {because}", (), f"fix {because.split(' ')[0]} first")


@dataclass(frozen=True)
class Report:
    """All checks in order; ``ok`` only when every one passed (the exit code follows it)."""

    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        counts = {s.value: sum(1 for c in self.checks if c.status is s) for s in Status}
        return {"ok": self.ok, "counts": counts, "checks": [c.to_dict() for c in self.checks]}

    def render_text(self) -> str:
        marks = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "SKIP"}
        lines: list[str] = []
        for check in self.checks:
            lines.append(f"[{marks[check.status]}] {check.name}: {check.summary}")
            lines.extend(f"       {d}" for d in check.details)
            if check.fix and not check.passed:
                lines.append(f"       fix: {check.fix}")
        total = len(self.checks)
        good = sum(1 for c in self.checks if c.passed)
        lines.append(f"{good}/{total} checks passed" + ("" if self.ok else "; see the fixes above"))
        return "\n".join(lines)
