{#- Casts shared by every model, so a type decision is made once. -#}

{#- Money in the shop currency's units: numeric(18, 2). Takes an expression yielding text or a number. -#}
{% macro to_money(expression) -%}
    cast({{ expression }} as numeric(18, 2))
{%- endmacro %}

{#- An ISO-8601 timestamp text with an offset or 'Z' (as every source API writes them) as timestamptz (UTC). -#}
{% macro to_timestamp_tz(expression) -%}
    cast({{ expression }} as {{ tailor.type_timestamp_tz() }})
{%- endmacro %}

{#- A 'YYYY-MM-DD' text as a date; anything longer is cut to its date part. -#}
{% macro to_date(expression) -%}
    cast(substr({{ expression }}, 1, 10) as date)
{%- endmacro %}

{#- The identity rule's email normalization: trimmed, lower case, empty as null. See DECISIONLOG.md. -#}
{% macro normalize_email(expression) -%}
    nullif(lower(trim({{ expression }})), '')
{%- endmacro %}

{#- The calendar date of a timestamptz in UTC, whatever the session time zone. -#}
{% macro utc_date(expression) -%}
    cast(({{ expression }} at time zone 'UTC') as date)
{%- endmacro %}

{#- Text compared byte by byte (the "C" collation), so min()/max() and ordering of keys are the same on every
    adapter and locale: DuckDB compares binary by default; Postgres follows the database's collation unless told. -#}
{% macro binary_text(expression) -%}
    {{ return(adapter.dispatch('binary_text', 'tailor')(expression)) }}
{%- endmacro %}

{% macro default__binary_text(expression) -%}
    {{ expression }}
{%- endmacro %}

{% macro postgres__binary_text(expression) -%}
    ({{ expression }} collate "C")
{%- endmacro %}
