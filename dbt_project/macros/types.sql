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

{#- The calendar date of a timestamptz in UTC, whatever the session time zone. DuckDB: through the epoch, a plain
    timestamp and no time zone lookup; `at time zone` goes through ICU's calendar, ten times slower (3.7 s against
    0.4 s over 52M events). -#}
{% macro utc_date(expression) -%}
    {{ return(adapter.dispatch('utc_date', 'tailor')(expression)) }}
{%- endmacro %}

{% macro default__utc_date(expression) -%}
    cast(({{ expression }} at time zone 'UTC') as date)
{%- endmacro %}

{% macro duckdb__utc_date(expression) -%}
    cast({{ tailor.duckdb_utc_timestamp(expression) }} as date)
{%- endmacro %}

{#- DuckDB: a timestamptz as the plain timestamp of its UTC wall clock, computed from the epoch (no ICU). -#}
{% macro duckdb_utc_timestamp(expression) -%}
    make_timestamp(epoch_us({{ expression }}))
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


{#- An aggregate: true when `expression` takes two or more distinct values in the group (its nulls ignored), false
    when one, null when none. DuckDB compares 64-bit hashes of the values, not the values: min/max over strings cost
    twice the whole grouping (a product's repeat buyers at 1M customers: 3.6 s -> 1.6 s). Two different values of one
    group compare equal only if their hashes collide, about one chance in 10^19 per pair. -#}
{% macro has_two_distinct(expression) -%}
    {{ return(adapter.dispatch('has_two_distinct', 'tailor')(expression)) }}
{%- endmacro %}

{% macro default__has_two_distinct(expression) -%}
    (min({{ expression }}) <> max({{ expression }}))
{%- endmacro %}

{% macro duckdb__has_two_distinct(expression) -%}
    (min(hash({{ expression }})) <> max(hash({{ expression }})))
{%- endmacro %}
