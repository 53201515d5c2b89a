{#- The as-of time of this run as a timestamptz literal: var('as_of') when given, else the run's start. -#}
{% macro as_of() -%}
    {%- set value = var('as_of', none) -%}
    {%- if value is none or value == '' -%}
        {%- set value = run_started_at.strftime('%Y-%m-%dT%H:%M:%S+00:00') -%}
    {%- endif -%}
    cast('{{ value }}' as {{ tailor.type_timestamp_tz() }})
{%- endmacro %}

{% macro type_timestamp_tz() -%}{{ return(adapter.dispatch('type_timestamp_tz', 'tailor')()) }}{%- endmacro %}
{% macro default__type_timestamp_tz() -%}timestamp with time zone{%- endmacro %}


{#- The as-of state of a base table (one row per record version, typed: models/staging/<source>/base/): per key,
    its latest version with updated_at at or before as_of(); records whose latest such version is a deletion
    (is_deleted) are dropped. Returns a select of every column of the picked versions, for use as a CTE body:
        with versions as ({{ tailor.as_of_versions(ref('base_shopify__customer_versions'), 'shopify_customer_id',
                                                   'raw.shopify_customers') }})
    A version after as_of is invisible; a deletion after as_of does not hide the record; a deletion at or before it
    does. (key, updated_at) is unique in a base table (as in raw.*), so the pick has no ties. Versions the raw
    quality gate quarantined (source quality.quarantine, rows of `raw_table`) are left out before the pick, so the
    record shows its previous good version.
    `distinct on` (Postgres's, which DuckDB shares) rather than row_number() = 1 or a join to max(updated_at): the
    Postgres planner estimates its output as the number of distinct keys, where it guesses a handful of rows for the
    other two (a filter on a window's output, a join on two correlated columns) and then nests loops over them. -#}
{% macro as_of_versions(relation, key_column, raw_table) -%}
    select picked.*
    from (
        select distinct on (versions.{{ key_column }}) versions.*
        from {{ relation }} as versions
        where versions.updated_at <= {{ tailor.as_of() }}
            and {{ tailor.not_quarantined(raw_table, 'versions.' ~ key_column, 'versions.updated_at') }}
        order by versions.{{ key_column }} asc, versions.updated_at desc
    ) as picked
    where not picked.is_deleted
{%- endmacro %}


{#- One text id for a record version (key, updated_at): '<key>@<microseconds since the epoch>'. The base tables of
    nested items (order lines, refund lines, variants) carry their parent version's id, so staging joins them to the
    as-of parent versions on one column: Postgres estimates a join on two correlated columns (id and time) as a
    handful of rows and plans nested loops downstream. -#}
{% macro version_id(key_expression, time_expression) -%}
    {{ key_expression }} || '@' || cast(
        cast({{ tailor.epoch_seconds(time_expression) }} * 1000000 as bigint) as {{ dbt.type_string() }}
    )
{%- endmacro %}


{#- The same pick straight on a raw versioned table (JSON payload), for the integrity tests that check the marts
    against raw.* independently of the base and staging layers: per record_id, its latest version with updated_at
    at or before as_of(), deletions dropped. Returns a select of record_id, updated_at and payload:
        with versions as ({{ tailor.latest_version_as_of(source('shopify', 'customers')) }}) -#}
{% macro latest_version_as_of(relation) -%}
    select
        ranked.record_id,
        ranked.updated_at,
        ranked.payload
    from (
        select
            versions.record_id,
            versions.updated_at,
            versions.payload,
            versions.is_deleted,
            row_number() over (partition by versions.record_id order by versions.updated_at desc) as version_rank
        from {{ relation }} as versions
        where versions.updated_at <= {{ tailor.as_of() }}
    ) as ranked
    where ranked.version_rank = 1 and not ranked.is_deleted
{%- endmacro %}


{#- The as-of state of a base table of immutable records (Klaviyo events): every record written at or before
    as_of() and not deleted, all its columns. No version pick: an immutable record has one version. -#}
{% macro immutable_as_of(relation, key_column, raw_table) -%}
    select records.*
    from {{ relation }} as records
    where records.updated_at <= {{ tailor.as_of() }} and not records.is_deleted
        and {{ tailor.not_quarantined(raw_table, 'records.' ~ key_column, 'records.updated_at') }}
{%- endmacro %}


{#- True for a record version the raw quality gate did not quarantine (source quality.quarantine). -#}
{% macro not_quarantined(raw_table, record_id_expression, updated_at_expression) -%}
    not exists (
        select 1
        from {{ source('quality', 'quarantine') }} as quarantined
        where quarantined.table_name = '{{ raw_table }}'
            and quarantined.record_id = {{ record_id_expression }}
            and quarantined.updated_at = {{ updated_at_expression }}
    )
{%- endmacro %}
