"""`powerplanner verify`: the checks a user runs after installing, each pass/fail with what to do on failure.

The package is the imperative shell's reader side: it only reads the cluster and Prometheus (plus one
SelfSubjectAccessReview per needed right), never changes anything, so it is safe to run at any time.
"""

from powerplanner.verify.result import CheckResult, Report, Status

__all__ = ["CheckResult", "Report", "Status"]
