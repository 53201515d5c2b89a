{#- Generic test on stg_ml__scoring_runs: every table the feed reads has a served scoring run for the build's as-of
    date (the UTC date of as_of), i.e. the models scored that date. Returns one row per table without one. A feed built
    before scoring would be empty or miss its scores; failing here, before the exports models, leaves the date's
    previous feed in place (dbt build skips what depends on a failed test).
    Usage in a models yml:
      data_tests:
        - scored_for_as_of_date:
            arguments:
              table_names: [ml.customer_scores, ml.customer_recommendations, ml.customer_send_times] -#}
{% test scored_for_as_of_date(model, table_names) %}
    select expected.table_name
    from (
        {%- for name in table_names %}
        select '{{ name }}' as table_name
        {%- if not loop.last %}
        union all
        {%- endif %}
        {%- endfor %}
    ) as expected
    where not exists (
        select 1
        from {{ model }} as runs
        where runs.is_served
            and runs.table_name = expected.table_name
            and runs.as_of_date = {{ tailor.utc_date(tailor.as_of()) }}
    )
{% endtest %}
