"""The dbt models are lint-clean under dbt_project/.sqlfluff, and the linter really renders them (no templating
failure hides a model from it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "dbt_project" / "models"


def _lint(*paths: Path, config: Path | None = None) -> list[dict]:
    extra = ["--config", str(config)] if config else []
    proc = subprocess.run([sys.executable, "-m", "sqlfluff", "lint", *map(str, paths), *extra, "--format", "json",
                           "--processes", "2", "--disable-progress-bar", "--nofail"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_models_are_lint_clean():
    models = sorted(MODELS.rglob("*.sql"))
    assert models, f"no models under {MODELS}"
    results = _lint(MODELS)
    linted = {(ROOT / result["filepath"]).resolve() for result in results}
    assert linted == {path.resolve() for path in models}, "sqlfluff skipped some models (see .sqlfluffignore)"
    problems = [f"{Path(result['filepath']).resolve().relative_to(ROOT)}:{violation['start_line_no']}:"
                f"{violation['start_line_pos']}: {violation['code']} {violation['description']}"
                for result in results for violation in result["violations"]]
    assert not problems, (f"{len(problems)} SQLFluff violation(s); `sqlfluff fix <file>` repairs most layout ones:\n"
                          + "\n".join(problems))


def test_linter_renders_macros_and_reports_a_violation(tmp_path):
    # A model using the project's macros (dispatched ones included), dbt's cross-db macros and vars renders without
    # a templating error, and a real violation in it is reported: the lint test above can fail.
    # The probe lives outside models/ (a concurrent dbt run must not see it), linted with the project's config.
    model = tmp_path / "lint_probe.sql"
    model.write_text(
        "with\n\norders as (\n    select\n        order_id,\n        ordered_at\n    from {{ ref('orders') }}\n"
        "    where ordered_at <= {{ tailor.as_of() }}\n),\n\n"
        "final as (\n    select\n        orders.order_id,\n"
        "        {{ tailor.json_text('orders.order_id', ['a', 0]) }} as probe,\n"
        "        {{ dbt.datediff('orders.ordered_at', tailor.as_of(), 'day') }} as age_days,\n"
        "        {{ var('churn_horizon_days') }} as horizon_days,\n"
        "        cast(orders.order_id as {{ dbt.type_string() }}) as order_key\n"
        "    FROM orders\n)\n\nselect * from final\n")
    results = _lint(model, config=ROOT / "dbt_project" / ".sqlfluff")
    violations = results[0]["violations"]
    assert [v["code"] for v in violations] == ["CP01"], violations  # the upper-case FROM, nothing else
