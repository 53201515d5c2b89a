"""What a gate run found, and the error a failed gate raises. No GX import."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tailor.times import stamp

# status of one expectation in a run
PASSED = "passed"
FAILED = "failed"  # severity fail: fails the gate
WARNED = "warned"  # severity warn: reported only
QUARANTINED = "quarantined"  # rows went to raw._quarantine, under the allowed share: passes

SAMPLES = 5  # sample values kept per expectation (in the results table and the messages)


@dataclass
class Outcome:
    """One expectation of one asset in one gate run."""

    suite: str
    asset: str
    table: str
    expectation: str
    column: str | None
    severity: str
    notes: str
    success: bool  # GX's verdict on the rows
    unexpected_count: int | None = None
    element_count: int | None = None
    samples: list[str] = field(default_factory=list)
    observed: str | None = None  # table-level expectations: GX's observed value
    quarantine: bool = False
    quarantined_rows: int = 0  # rows this expectation sent to raw._quarantine
    quarantined_share: float | None = None  # of the asset's rows, over all its quarantining expectations
    max_share: float | None = None
    error: str | None = None  # GX could not evaluate it (a bad column name, SQL error...)
    kwargs: dict = field(default_factory=dict)  # the expectation's kwargs, as in the suite file
    index_query: str | None = field(default=None, repr=False)  # GX's SQL for the failing rows (quarantine)

    @property
    def status(self) -> str:
        if self.success and self.error is None:
            return PASSED
        if (self.quarantine and self.error is None and self.quarantined_share is not None
                and self.max_share is not None and self.quarantined_share <= self.max_share):
            return QUARANTINED
        return FAILED if self.severity == "fail" else WARNED

    def describe(self) -> str:
        """One line: where, which expectation, what it means, how many rows, examples."""
        where = self.table + (f" column {self.column}" if self.column else "")
        text = f"{self.expectation} on {where}"
        if self.notes:
            text += f" [{self.notes}]"
        if self.error:
            return f"{text}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            of = f" of {self.element_count:,} rows" if self.element_count is not None else ""
            text += f": {self.unexpected_count:,} unexpected{of}"
        elif self.observed is not None:
            text += f": observed {self.observed}"
        if self.quarantine and self.quarantined_share is not None:
            verdict = "within" if self.quarantined_share <= (self.max_share or 0) else "over"
            text += (f", {self.quarantined_rows:,} quarantined ({self.quarantined_share:.2%} of the rows, "
                     f"{verdict} the {self.max_share:.2%} limit)")
        if self.samples:
            text += "; e.g. " + "; ".join(self.samples)
        return text


@dataclass
class GateReport:
    suite: str
    as_of: datetime
    run_id: str
    run_at: datetime
    outcomes: list[Outcome] = field(default_factory=list)
    docs: str | None = None  # Data Docs index (a file path)
    validate_seconds: float = 0.0  # setup, materialized rows, GX validation, quarantine, results table
    seconds: float = 0.0  # the whole run, Data Docs and results included

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == WARNED]

    @property
    def quarantines(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == QUARANTINED]

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        counts = {status: sum(o.status == status for o in self.outcomes)
                  for status in (PASSED, FAILED, WARNED, QUARANTINED)}
        verdict = "passed" if self.success else "FAILED"
        return (f"gate {self.suite} {verdict} as of {stamp(self.as_of)}: {len(self.outcomes)} expectations, "
                f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[WARNED]} warned, "
                f"{counts[QUARANTINED]} with rows quarantined within the limit ({self.seconds:.1f} s)")

    def lines(self) -> list[str]:
        """The summary, then one line per expectation that did not simply pass, then where the docs are."""
        lines = [self.summary()]
        for outcome in self.outcomes:
            if outcome.status != PASSED:
                lines.append(f"  {outcome.status.upper():<11} {outcome.describe()}")
        if self.docs:
            lines.append(f"  Data Docs: {self.docs}")
        return lines


class GateFailed(RuntimeError):
    """A gate found a failed `fail` expectation. The message names, per failure: suite, expectation, table, column,
    unexpected count and sample values."""

    def __init__(self, report: GateReport):
        self.report = report
        failures = report.failures
        lines = [f"gate {report.suite} failed as of {stamp(report.as_of)}: {len(failures)} failed expectation(s) "
                 f"(run {report.run_id})"]
        lines += [f"  - {report.suite}: {outcome.describe()}" for outcome in failures]
        if report.docs:
            lines.append(f"  Data Docs: {report.docs}")
        super().__init__("\n".join(lines))


class GateError(RuntimeError):
    """A gate could not run at all (its suite, its SQL, the warehouse): not a verdict on the data."""


