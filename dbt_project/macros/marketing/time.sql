{#- Time helpers for the marketing and ML models. Every timestamp in Tailor is a timestamptz in UTC; these helpers
    never depend on the session time zone (a Postgres server in another zone gives the same answers). -#}

{#- Seconds since the epoch of a timestamptz, as a number. -#}
{% macro epoch_seconds(ts) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'tailor')(ts)) }}
{%- endmacro %}

{% macro default__epoch_seconds(ts) -%}
    extract(epoch from {{ ts }})
{%- endmacro %}

{#- Elapsed days (fractional) from start_ts to end_ts: exact seconds / 86400, so DST and calendars never matter. -#}
{% macro days_between(start_ts, end_ts) -%}
    (({{ tailor.epoch_seconds(end_ts) }} - {{ tailor.epoch_seconds(start_ts) }}) / 86400.0)
{%- endmacro %}

{#- Whole elapsed days from start_ts to end_ts (floor of the fractional days; 0 within the first 24 hours). -#}
{% macro whole_days_between(start_ts, end_ts) -%}
    cast(floor({{ tailor.days_between(start_ts, end_ts) }}) as integer)
{%- endmacro %}

{#- Elapsed hours (fractional) from start_ts to end_ts. -#}
{% macro hours_between(start_ts, end_ts) -%}
    (({{ tailor.epoch_seconds(end_ts) }} - {{ tailor.epoch_seconds(start_ts) }}) / 3600.0)
{%- endmacro %}

{#- ts plus n days of exactly 24 hours (n may be negative or an expression). A calendar "1 day" interval would follow
    the session time zone's DST shifts on Postgres; 24-hour steps never do. -#}
{% macro add_days(ts, n) -%}
    {{ return(adapter.dispatch('add_days', 'tailor')(ts, n)) }}
{%- endmacro %}

{% macro default__add_days(ts, n) -%}
    ({{ ts }} + ({{ n }}) * interval '24 hours')
{%- endmacro %}

{#- Hour of day 0..23 of a timestamptz in UTC (DuckDB: without ICU, as utc_date). -#}
{% macro utc_hour(ts) -%}
    {{ return(adapter.dispatch('utc_hour', 'tailor')(ts)) }}
{%- endmacro %}

{% macro default__utc_hour(ts) -%}
    cast(extract(hour from ({{ ts }} at time zone 'UTC')) as integer)
{%- endmacro %}

{% macro duckdb__utc_hour(ts) -%}
    cast(extract(hour from {{ tailor.duckdb_utc_timestamp(ts) }}) as integer)
{%- endmacro %}

{#- Exponential recency weight 0.5 ^ (age_days / half_life_days): 1 now, 0.5 one half-life ago. -#}
{% macro decay_weight(age_days, half_life_days) -%}
    power(0.5, ({{ age_days }}) / ({{ half_life_days }} * 1.0))
{%- endmacro %}
