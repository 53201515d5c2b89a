"""The training, personalization and feed reports: one self-contained HTML file per run (per feed date), every
section present, plots embedded as data URIs, user text escaped, degenerate inputs explained instead of raised, and
the file replaced atomically."""

from __future__ import annotations

import base64
import os

import numpy as np
import pandas as pd
import pytest

from ml.report import (
    FeedReport,
    PersonalizationReport,
    ScoredCandidate,
    TrainingReport,
    _hit_rate_grid,
    lift_by_decile,
    plot_calibration,
    plot_coverage,
    plot_drift,
    plot_feed_lift,
    plot_hit_rate_by_history,
    plot_roc,
    plot_send_hours,
    render_feed_report,
    render_personalization_report,
    render_report,
    write_feed_report,
    write_personalization_report,
    write_report,
)

IMG = '<img src="data:image/png;base64,'
HEADINGS = ["Summary", "Churn model", "Customer segments", "Choosing the number of segments",
            "Customer lifetime value", "Feature drift", "Notes"]
PERSONALIZATION_HEADINGS = ["Summary", "Product recommendations", "Send times", "Example customers", "Notes"]
FEED_HEADINGS = ["Summary", "Lift readout: treatment against holdout", "Next best actions", "Experiment groups",
                 "Notes"]


def _candidates(n: int = 600, seed: int = 1) -> list[ScoredCandidate]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(risk - 1)))).astype(int)
    probability = 1 / (1 + np.exp(-(risk - 1 + rng.normal(scale=0.5, size=n))))
    recency_days = np.round(np.clip(risk * 30 + 90, 0, None), -1)  # coarse, many ties
    return [
        ScoredCandidate("boosting_blend", y, probability, is_probability=True),
        ScoredCandidate("recency_rule", y, recency_days, is_probability=False),
    ]


def _report(**overrides) -> TrainingReport:
    segments = pd.DataFrame({
        "segment_id": [0, 1, 2],
        "segment_name": ["Loyal & frequent", "<script>alert(1)</script>", "$ big spenders"],
        "customers": [500, 300, 200],
        "share": [0.5, 0.3, 0.2],
        "recency_days": [20.5, 140.0, 60.25],
        "orders_12m": [6.1, 1.2, 3.4],
        "net_sales_12m": [820.0, 95.5, 2450.75],
    })
    deciles = pd.DataFrame([
        {"metric": metric, "decile": d, "customers": 100, "predicted_mean": scale * (11 - d) / 10,
         "actual_mean": scale * (11 - d) / 10 * 1.05}
        for metric, scale in (("orders_12m", 4.0), ("net_sales_12m", 600.0)) for d in range(1, 11)
    ])
    fields = dict(
        title="Tailor training run",
        as_of="2024-06-30",
        model_version="v3",
        summary={"data window": "2022-07-01 .. 2024-06-30", "served churn model": "boosting_blend",
                 "promotion": "promoted: AUC 0.81 > 0.78 & calibrated"},
        churn_candidates=_candidates(),
        churn_metrics=pd.DataFrame({
            "candidate": ["boosting_blend", "recency_rule"], "roc_auc": [0.81234567, 0.7345],
            "pr_auc": [0.6012, 0.52], "brier": [0.1543219, None], "customers": [600, 600],
            "churn_rate": [0.3333333, 0.3333333]}),
        churn_note=None,
        segment_profiles=segments,
        silhouette_by_k={2: 0.31, 3: 0.42, 4: 0.38, 5: 0.33},
        inertia_by_k={2: 5400.0, 3: 3900.0, 4: 3300.0, 5: 3000.0},
        chosen_k=3,
        clv_deciles=deciles,
        clv_metrics=pd.DataFrame({"metric": ["orders_12m", "orders_12m"], "model": ["bgnbd", "baseline"],
                                  "mae": [1.234567, 1.9]}),
        drift=pd.DataFrame({"feature": ["recency_days", "orders_12m", "net_sales_12m"], "psi": [0.02, 0.13, 0.4],
                            "status": ["ok", "warn", "fail"]}),
        notes=["BG/NBD fitted on 24 months", "note with <b>markup</b>"],
    )
    fields.update(overrides)
    return TrainingReport(**fields)


def _light_report(**overrides) -> TrainingReport:
    """No plots, for the tests about the file rather than its contents."""
    base = dict(churn_candidates=[], churn_note="no labelled window", segment_profiles=pd.DataFrame(),
                silhouette_by_k={}, inertia_by_k={}, clv_deciles=None, clv_metrics=None, drift=None)
    return _report(**{**base, **overrides})


def test_a_full_report_is_one_file_with_every_section_and_plot(tmp_path):
    path = write_report(_report(), tmp_path / "reports")

    assert path == tmp_path / "reports" / "training-2024-06-30-v3.html"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    text = path.read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in text
    # ROC, calibration, lift, segments, choice of k, CLV (one figure, a subplot per metric), drift
    assert text.count(IMG) == 7
    assert "v3" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script" not in text
    assert "&lt;b&gt;markup&lt;/b&gt;" in text
    assert "AUC 0.81 &gt; 0.78 &amp; calibrated" in text
    assert "could not be drawn" not in text and "skipped" not in text
    assert "0.8123" in text and "0.1543" in text and "—" in text  # 4 significant digits; the missing brier
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert path.stat().st_size < 1_500_000
    png = base64.b64decode(text.split(IMG, 1)[1].split('"', 1)[0])
    assert png.startswith(b"\x89PNG")


def test_a_report_without_churn_candidates_clv_or_drift_still_renders(tmp_path):
    note = "history too short for a labelled window: BG/NBD serves alone"
    report = _report(churn_candidates=[], churn_metrics=pd.DataFrame(), churn_note=note, clv_deciles=None,
                     clv_metrics=None, drift=None, notes=[])

    text = write_report(report, tmp_path).read_text(encoding="utf-8")

    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in text
    assert "history too short for a labelled window: BG/NBD serves alone" in text
    assert "No CLV back-test in this run." in text
    assert "No drift check in this run." in text
    assert text.count(IMG) == 2  # segments and the choice of k


def test_single_class_labels_skip_the_plots_that_need_both_classes():
    candidates = [ScoredCandidate(c.name, np.zeros_like(c.y_true), c.score, c.is_probability) for c in _candidates()]

    text = render_report(_report(churn_candidates=candidates, clv_deciles=None, clv_metrics=None, drift=None))

    assert "ROC curves skipped: boosting_blend: only one class in the labels (none churned)." in text
    assert "Lift by decile skipped:" in text
    assert "could not be drawn" not in text
    assert text.count(IMG) == 3  # calibration (observed rate 0), segments, choice of k


def test_degenerate_inputs_are_explained_not_raised():
    ones = np.ones(5)
    assert plot_roc([]).png is None
    assert "5 labels but 4 scores" in plot_roc([ScoredCandidate("a", ones, np.ones(4), True)]).note
    assert "outside [0, 1]" in plot_calibration([ScoredCandidate("a", np.array([0, 1]), np.array([2, 3]), True)]).note
    assert plot_calibration([ScoredCandidate("rule", np.array([0, 1]), np.array([2, 3]), False)]).png is None
    assert plot_drift(pd.DataFrame({"feature": ["x"], "psi": [None], "status": ["ok"]})).png is None
    text = render_report(_report(segment_profiles=pd.DataFrame(), silhouette_by_k={}, inertia_by_k={},
                                 clv_deciles=pd.DataFrame({"decile": [1]}), drift=pd.DataFrame()))
    assert "Segment profiles skipped: no segments." in text
    assert "Choice of k skipped" in text
    assert "missing columns actual_mean, predicted_mean" in text
    assert "No features checked." in text
    assert text.count(IMG) == 3  # only the churn plots


def test_one_valid_candidate_is_drawn_and_the_other_is_named():
    good, _ = _candidates()
    nan_scores = ScoredCandidate("bgnbd_p_alive", good.y_true, np.full(good.y_true.size, np.nan), True)

    plot = plot_roc([good, nan_scores])

    assert plot.png is not None
    assert plot.note == "Not drawn: bgnbd_p_alive: no scored customers."


def test_lift_by_decile_puts_the_highest_scores_first():
    y = np.array([1] * 10 + [0] * 90)
    lift = lift_by_decile(y, np.arange(100, 0, -1))  # the 10 churners have the highest scores

    assert lift[0] == pytest.approx(10.0)
    assert lift[1:].sum() == 0
    assert lift.mean() == pytest.approx(1.0)


def test_the_file_name_uses_the_date_of_as_of_and_a_safe_version(tmp_path):
    path = write_report(_light_report(as_of="2024-06-30T05:00:00+00:00", model_version="../v 4"), tmp_path)

    assert path.parent == tmp_path
    assert path.name == "training-2024-06-30-v_4.html"
    with pytest.raises(ValueError, match="as_of"):
        write_report(_light_report(as_of="last tuesday"), tmp_path)


def test_the_report_is_replaced_atomically(tmp_path, monkeypatch):
    report = _light_report(churn_note="first")
    path = write_report(report, tmp_path)
    report.churn_note = "second"
    assert write_report(report, tmp_path) == path
    assert "second" in path.read_text(encoding="utf-8")
    assert os.listdir(tmp_path) == [path.name]

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    report.churn_note = "third"
    with pytest.raises(OSError, match="disk full"):
        write_report(report, tmp_path)
    assert os.listdir(tmp_path) == [path.name]  # the temp file is gone, the old page intact
    assert "second" in path.read_text(encoding="utf-8")


def _personalization_report(**overrides) -> PersonalizationReport:
    candidates = ["item_item", "als", "popularity"]
    buckets = [("0", 4000), ("1-4", 2500), ("5-19", 900), ("20+", 120)]
    hours = np.arange(24)
    engagement = np.exp(-0.5 * ((hours - 19) / 3) ** 2) + 0.3 * np.exp(-0.5 * ((hours - 8) / 2) ** 2)
    fields = dict(
        title="Tailor personalization run",
        as_of="2024-06-30T04:00:00+00:00",
        model_versions={"recommendations": "v3", "send times": "v2"},
        summary={"validation window": "2024-06-01 .. 2024-06-30", "served recommender": "item_item",
                 "send times": "promoted: hit share 0.31 > 0.24 & stable"},
        rec_metrics=pd.DataFrame({
            "candidate": candidates, "hit_rate": [0.1812345, 0.15, 0.09], "recall": [0.12, 0.1, 0.06],
            "ndcg": [0.08, 0.07, np.nan], "coverage": [0.32, 0.21, 0.004], "customers": [7520, 7520, 7520],
            "served": [True, False, False]}),
        rec_hit_rate_by_history=pd.DataFrame([
            {"candidate": c, "history": bucket, "customers": n, "hit_rate": 0.06 + 0.01 * i * (2 - j)}
            for j, c in enumerate(candidates) for i, (bucket, n) in enumerate(buckets)
        ]),
        send_metrics=pd.DataFrame({
            "method": ["model", "shop_hour", "historical_mode"], "customers": [3000, 3000, 3000],
            "engagements": [8000, 8000, 8000], "hits": [2480, 1920, 2240], "hit_share": [0.31, 0.24, 0.28]}),
        send_hour_distribution=pd.DataFrame({
            "hour": hours, "customers": np.round(3000 * engagement / engagement.sum()).astype(int),
            "engagement_share": engagement / engagement.sum()}),
        send_prior=pd.DataFrame({"group": ["retail", "wholesale", "unknown"], "concentration": [3.2, 11.5, np.nan],
                                 "customers": [2500, 400, 100], "uses_shop_prior": [False, False, True],
                                 "best_hour": [19, 8, 19]}),
        samples=pd.DataFrame({
            "customer_id": ["c-1", "c-1", "c-2"], "rank": [1, 2, 1],
            "product_title": ["Linen shirt", "<script>alert(1)</script> mug", "$ gift card"],
            "category": ["shirts", "kitchen", "gifts"], "reason": ["bought_together", "viewed", "bestseller"],
            "send_hour_local": [19, 19, 8], "timezone": ["Europe/Berlin", "Europe/Berlin", "America/New_York"]}),
        notes=["ALS fitted with 64 factors", "note with <b>markup</b>"],
    )
    fields.update(overrides)
    return PersonalizationReport(**fields)


def test_a_full_personalization_report_is_one_file_with_every_section_plot_and_table(tmp_path):
    path = write_personalization_report(_personalization_report(), tmp_path / "reports")

    assert path == tmp_path / "reports" / "personalization-2024-06-30-recommendations_v3-send_times_v2.html"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    text = path.read_text(encoding="utf-8")
    for heading in PERSONALIZATION_HEADINGS:
        assert f"<h2>{heading}</h2>" in text
    assert text.count(IMG) == 3  # hit rate by history, coverage, send hours
    assert text.count("<figcaption>") == 3  # each plot says what to look for
    for cell in ("item_item", "historical_mode", "wholesale", "Europe/Berlin", "bought_together"):
        assert f"<td>{cell}</td>" in text
    assert "0.1812" in text and "—" in text  # 4 significant digits; the missing ndcg and concentration
    assert "recommendations <strong>v3</strong>, send times <strong>v2</strong>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; mug" in text and "<script" not in text
    assert "&lt;b&gt;markup&lt;/b&gt;" in text
    assert "hit share 0.31 &gt; 0.24 &amp; stable" in text
    assert "could not be drawn" not in text and "skipped" not in text
    assert "http://" not in text and "https://" not in text
    png = base64.b64decode(text.split(IMG, 1)[1].split('"', 1)[0])
    assert png.startswith(b"\x89PNG")


def test_a_personalization_report_without_any_optional_input_still_renders():
    empty = pd.DataFrame()
    for value in (None, empty):
        report = _personalization_report(
            model_versions={}, summary={}, rec_metrics=value, rec_hit_rate_by_history=value, send_metrics=value,
            send_hour_distribution=value, send_prior=value, samples=value, notes=[])

        text = render_personalization_report(report)

        for heading in PERSONALIZATION_HEADINGS:
            assert f"<h2>{heading}</h2>" in text
        assert IMG not in text
        assert "No summary." in text and "No example customers." in text and "No notes." in text
        if value is None:
            assert "No recommendation evaluation in this run." in text
            assert "No send-time evaluation in this run." in text
        else:
            assert "No recommendation metrics." in text and "Hit rate by history skipped" in text
            assert "Coverage plot skipped" in text and "Send hours plot skipped" in text
            assert "No send-time back-test" in text and "No hour priors." in text


def test_a_shop_without_engagements_gets_its_send_hours_without_a_back_test(tmp_path):
    report = _personalization_report(model_versions={"recommendations": "../v 4"}, send_metrics=None)
    report.send_hour_distribution["engagement_share"] = np.nan

    path = write_personalization_report(report, tmp_path)

    assert path.name == "personalization-2024-06-30-recommendations_v_4.html"
    text = path.read_text(encoding="utf-8")
    assert "No send-time back-test (it needs engagements after the training window)." in text
    assert "No engagement shares: line not drawn." in text
    assert text.count(IMG) == 3
    with pytest.raises(ValueError, match="PersonalizationReport.as_of"):
        write_personalization_report(_personalization_report(as_of="last tuesday"), tmp_path)


def test_hit_rates_keep_the_bucket_order_and_label_each_bucket_with_its_customers():
    frame = pd.DataFrame({"candidate": ["als", "als", "popularity", "popularity"],
                          "history": ["20+", "0", "20+", "0"], "customers": [120, 4000, 118, 4000],
                          "hit_rate": [0.2, 0.05, 0.1, np.nan]})

    grid, labels = _hit_rate_grid(frame)

    assert list(grid.index) == ["20+", "0"] and list(grid.columns) == ["als", "popularity"]
    assert labels == ["20+\n(120 customers)", "0\n(4,000 customers)"]
    assert np.isnan(grid.loc["0", "popularity"])
    assert plot_hit_rate_by_history(frame).png is not None


def test_degenerate_personalization_plots_are_explained_not_raised():
    assert "missing columns hit_rate" in plot_hit_rate_by_history(pd.DataFrame({"candidate": ["a"], "history": ["0"],
                                                                                "customers": [1]})).note
    assert plot_hit_rate_by_history(pd.DataFrame({"candidate": ["a"], "history": ["0"], "customers": [1],
                                                  "hit_rate": [None]})).png is None
    no_served = plot_coverage(pd.DataFrame({"candidate": ["a", "b"], "coverage": [0.2, None]}))
    assert no_served.png is not None
    assert no_served.note == "1 candidate(s) without a coverage value not drawn. No candidate is marked as served."
    assert plot_coverage(pd.DataFrame({"candidate": ["a"], "coverage": ["n/a"], "served": [True]})).png is None
    odd_hours = plot_send_hours(pd.DataFrame({"hour": [7, 24, -1, 3.5], "customers": [10, 1, 1, 1]}))
    assert odd_hours.png is not None
    assert odd_hours.note == "3 row(s) with an hour outside 0..23 not drawn. No engagement shares: line not drawn."
    assert plot_send_hours(pd.DataFrame({"hour": [7], "customers": [None], "engagement_share": [None]})).png is None


def _lift() -> pd.DataFrame:
    """Two cohorts of exports.feed_lift, both metrics; the later cohort's window is still open."""
    rows = []
    for day, complete in (("2026-05-01", True), ("2026-05-15", False)):
        rows.append({"as_of_date": day, "metric": "conversion", "horizon_days": 14, "is_window_complete": complete,
                     "treatment_customers": 900, "holdout_customers": 100, "treatment_value": 0.052,
                     "holdout_value": 0.04, "difference": 0.012, "ci_lower": -0.03, "ci_upper": 0.054,
                     "z_statistic": 0.56, "is_significant": False})
        rows.append({"as_of_date": day, "metric": "net_sales", "horizon_days": 14, "is_window_complete": complete,
                     "treatment_customers": 900, "holdout_customers": 100, "treatment_value": 4.1,
                     "holdout_value": 2.0, "difference": 2.1, "ci_lower": 0.3, "ci_upper": 3.9,
                     "z_statistic": 2.29, "is_significant": True})
    return pd.DataFrame(rows)


def _feed_report(**overrides) -> FeedReport:
    fields = dict(
        as_of="2026-05-15",
        summary={"feed date": "2026-05-15", "customers in the feed": "1,000", "treatment": "900 (90.0%)",
                 "holdout": "100 (10.0%)"},
        next_best_actions=pd.DataFrame({"next_best_action": ["default", "win_back", "vip"],
                                        "customers": [700, 200, 100], "share": [0.7, 0.2, 0.1]}),
        experiment_groups=pd.DataFrame({"experiment_group": ["treatment", "holdout"], "customers": [900, 100]}),
        lift=_lift(),
        notes=["note with <b>markup</b>"],
    )
    fields.update(overrides)
    return FeedReport(**fields)


def test_a_feed_report_is_one_file_per_feed_date_with_the_lift_plot_and_tables(tmp_path):
    path = write_feed_report(_feed_report(), tmp_path / "reports")

    assert path == tmp_path / "reports" / "feed-2026-05-15.html"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    text = path.read_text(encoding="utf-8")
    for heading in FEED_HEADINGS:
        assert f"<h2>{heading}</h2>" in text
    assert text.count(IMG) == 1
    assert "Lighter points: cohorts whose 14-day window is still open" in text
    assert "interval contains 0 is no evidence of lift" in text and "about 5 % of cohorts" in text
    for cell in ("2026-05-01", "net_sales", "win_back", "holdout"):
        assert f"<td>{cell}</td>" in text
    assert "&lt;b&gt;markup&lt;/b&gt;" in text
    assert "could not be drawn" not in text and "skipped" not in text
    assert "http://" not in text and "https://" not in text
    png = base64.b64decode(text.split(IMG, 1)[1].split('"', 1)[0])
    assert png.startswith(b"\x89PNG")


def test_a_feed_report_without_cohorts_says_so_instead_of_a_plot():
    for lift in (None, _lift().iloc[0:0]):
        text = render_feed_report(_feed_report(lift=lift, next_best_actions=None, experiment_groups=None, notes=[]))

        for heading in FEED_HEADINGS:
            assert f"<h2>{heading}</h2>" in text
        assert IMG not in text
        assert "No feed cohorts yet" in text
        assert "No next best actions" in text and "No experiment groups" in text and "No notes." in text


def test_the_feed_report_file_name_is_the_feed_date_and_a_rebuild_replaces_it(tmp_path):
    first = write_feed_report(_feed_report(as_of="2026-05-15T06:00:00+00:00", lift=None), tmp_path)
    again = write_feed_report(_feed_report(as_of="2026-05-15", lift=None, notes=["rebuilt"]), tmp_path)

    assert first == again == tmp_path / "feed-2026-05-15.html"
    assert os.listdir(tmp_path) == [first.name]
    assert "rebuilt" in first.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="FeedReport.as_of"):
        write_feed_report(_feed_report(as_of="last tuesday"), tmp_path)


def test_degenerate_feed_lift_is_explained_not_raised():
    assert "missing columns ci_lower, ci_upper" in plot_feed_lift(_lift().drop(columns=["ci_lower", "ci_upper"])).note
    assert plot_feed_lift(_lift().assign(difference=None)).png is None
    one = plot_feed_lift(_lift().iloc[[0]].assign(ci_upper=None).drop(columns=["is_window_complete"]))
    assert one.png is not None
    assert one.note == ("No is_window_complete column: every cohort drawn as complete. "
                        "1 point(s) without an interval drawn without an error bar.")
