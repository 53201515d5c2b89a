{#- One row per day from start_date to end_date inclusive, in a column named date_day (type date).
    start_date / end_date are SQL expressions yielding dates. Use it in a from clause: `from ({{ date_spine(...) }}) as days`. -#}
{% macro date_spine(start_date, end_date) -%}
    {{ return(adapter.dispatch('date_spine', 'tailor')(start_date, end_date)) }}
{%- endmacro %}

{% macro duckdb__date_spine(start_date, end_date) -%}
    select cast(spine.generate_series as date) as date_day
    from generate_series(
        cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval 1 day
    ) as spine
{%- endmacro %}

{% macro postgres__date_spine(start_date, end_date) -%}
    select cast(spine.day_start as date) as date_day
    from generate_series(
        cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 day'
    ) as spine (day_start)
{%- endmacro %}
