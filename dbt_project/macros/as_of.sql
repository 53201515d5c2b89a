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


{#- known_at (optional): only record versions loaded by then are used, so that a past run can be reproduced as it
    was, including what had not arrived yet. Unset: every version loaded. Returns a timestamptz literal or none. -#}
{% macro known_at() -%}
    {%- set value = var('known_at', none) -%}
    {%- if value is none or value == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("cast('" ~ value ~ "' as " ~ tailor.type_timestamp_tz() ~ ")") }}
{%- endmacro %}

{#- True for a version loaded by known_at (always true when known_at is unset): the load that wrote it to raw (its
    batch and extraction time in raw._batches) committed by then. Only a build with known_at pays for the lookup. -#}
{% macro loaded_by_known_at(versions_alias) -%}
    {%- set known = tailor.known_at() -%}
    {%- if known is none -%}
        true
    {%- else -%}
        exists (
            select 1
            from {{ source('loads', 'batches') }} as loads
            where loads.batch_id = {{ versions_alias }}.batch_id
                and loads.extracted_at = {{ versions_alias }}.extracted_at
                and loads.loaded_at <= {{ known }}
        )
    {%- endif -%}
{%- endmacro %}


{#- The state of each record of a base table (one row per record version, typed: models/staging/<source>/base/) at
    `at` (default as_of()), by the two-time rule (DECISIONLOG.md, "The as-of rule"):
      1. its latest version with updated_at at or before `at`; a record whose such version is a deletion is dropped;
      2. else, when the record existed by `at` by its own creation time (created_column: order processed_at,
         customer/contact/profile created_at), its EARLIEST loaded version that is no deletion. That version is
         later than `at`: is_after_as_of is true, and the staging model reduces its time-stamped parts to `at`
         (refunds, cancellation, consent) and nulls what cannot be known then. A deletion after `at` hides nothing.
    Versions the raw quality gate quarantined (source quality.quarantine, rows of `raw_table`) are left out before
    the pick, so the record shows its previous good version; with known_at, so are versions loaded after it (and
    quarantines made after it). Returns a select of every column of the picked versions plus is_after_as_of, for use
    as a CTE body:
        with versions as ({{ tailor.as_of_versions(ref('base_shopify__customer_versions'), 'shopify_customer_id',
                                                   'raw.shopify_customers', 'created_at') }})
    (key, updated_at) is unique in a base table (as in raw.*), so the pick has no ties.
    On Postgres `distinct on` rather than row_number() = 1 or a join to max(updated_at): the planner estimates its
    output as the number of distinct keys, where it guesses a handful of rows for the other two (a filter on a
    window's output, a join on two correlated columns) and then nests loops over them. DuckDB takes the join to
    max(updated_at) (see _latest_versions).
    Two picks in a union rather than one ordered by "at or before `at` first": the second finds nothing when `at` is
    now (no version is later), so the usual run costs what the one-time pick did (one ordering on a computed key
    measured 30-50 % slower per evaluation at M, and staging views are evaluated by every test on them). -#}
{% macro as_of_versions(relation, key_column, raw_table, created_column, at=none) -%}
    {%- set at = at if at is not none else tailor.as_of() -%}
    select picked.*
    from (
        select
            latest.*,
            false as is_after_as_of
        from ({{ tailor._latest_versions(relation, key_column, raw_table, at) }}) as latest

        union all

        select
            earliest.*,
            true as is_after_as_of
        from (
            select distinct on (versions.{{ key_column }}) versions.*
            from {{ relation }} as versions
            where versions.updated_at > {{ at }}
                and versions.{{ created_column }} <= {{ at }}
                and not versions.is_deleted
                and {{ tailor._usable_version(raw_table, 'versions', key_column) }}
                and not exists (
                    select 1
                    from {{ relation }} as by_then
                    where by_then.{{ key_column }} = versions.{{ key_column }}
                        and by_then.updated_at <= {{ at }}
                        and {{ tailor._usable_version(raw_table, 'by_then', key_column) }}
                )
            order by versions.{{ key_column }} asc, versions.updated_at asc
        ) as earliest
    ) as picked
    where not picked.is_deleted
{%- endmacro %}

{#- Step 1 of the pick: each record's latest usable version at or before `at`, every column. -#}
{% macro _latest_versions(relation, key_column, raw_table, at) -%}
    {{ return(adapter.dispatch('_latest_versions', 'tailor')(relation, key_column, raw_table, at)) }}
{%- endmacro %}

{% macro default___latest_versions(relation, key_column, raw_table, at) -%}
    select distinct on (versions.{{ key_column }}) versions.*
    from {{ relation }} as versions
    where versions.updated_at <= {{ at }}
        and {{ tailor._usable_version(raw_table, 'versions', key_column) }}
    order by versions.{{ key_column }} asc, versions.updated_at desc
{%- endmacro %}

{#- DuckDB: the latest time per key first, then the versions at those (key, time) pairs ((key, updated_at) is unique).
    DuckDB runs `distinct on` as a hash aggregate that carries every column of every version through it; grouping
    two columns and joining back reads the wide rows once: the as-of orders at a million customers (3.6M of them)
    18.6 s -> 2.0 s. -#}
{% macro duckdb___latest_versions(relation, key_column, raw_table, at) -%}
    select versions.*
    from {{ relation }} as versions
    inner join (
        select
            usable.{{ key_column }} as picked_key,
            max(usable.updated_at) as picked_updated_at
        from {{ relation }} as usable
        where usable.updated_at <= {{ at }}
            and {{ tailor._usable_version(raw_table, 'usable', key_column) }}
        group by usable.{{ key_column }}
    ) as picked
        on versions.{{ key_column }} = picked.picked_key and versions.updated_at = picked.picked_updated_at
{%- endmacro %}

{#- A version the pick may use: loaded by known_at, not quarantined. -#}
{% macro _usable_version(raw_table, alias, key_column) -%}
    {{ tailor.loaded_by_known_at(alias) }}
    and {{ tailor.not_quarantined(raw_table, alias ~ '.' ~ key_column, alias ~ '.updated_at') }}
{%- endmacro %}


{#- A time-stamped part of a version reduced to as_of: the time when it is at or before as_of, else null (it had not
    happened yet at as_of). -#}
{% macro by_as_of(time_expression) -%}
    case when {{ time_expression }} <= {{ tailor.as_of() }} then {{ time_expression }} end
{%- endmacro %}

{#- The time a picked version stands for in staging: its updated_at, or as_of for a version after as_of reduced to it
    (the record's last change by as_of is unknown, but never later than as_of). Incremental marts compare it to tell
    whether a stored row is still the as-of state. -#}
{% macro state_updated_at(versions_alias) -%}
    case when {{ versions_alias }}.is_after_as_of then {{ tailor.as_of() }} else {{ versions_alias }}.updated_at end
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


{#- The same two-time pick straight on a raw versioned table (JSON payload), for the integrity tests that check the
    marts against raw.* independently of the base and staging layers: per record_id, its latest version with
    updated_at at or before as_of(), else (when created_expression, the record's creation time read from
    `versions.payload`, is at or before as_of) its earliest later version that is no deletion; deletions dropped.
    Returns a select of record_id, updated_at, payload and is_after_as_of:
        with versions as ({{ tailor.raw_state_as_of(source('shopify', 'customers'),
                                                    tailor.json_text('versions.payload', ['createdAt'])) }}) -#}
{% macro raw_state_as_of(relation, created_expression) -%}
    select
        picked_versions.record_id,
        picked_versions.updated_at,
        picked_versions.payload,
        picked_versions.updated_at > {{ tailor.as_of() }} as is_after_as_of
    from {{ relation }} as picked_versions
    -- the pick ranks keys only, then the picked versions' payloads are read: sorting the payloads with the keys
    -- made DuckDB spill them (raw orders at a million customers are gigabytes of JSON)
    inner join (
        select
            ranked.record_id,
            ranked.updated_at
        from (
            select
                versions.record_id,
                versions.updated_at,
                versions.is_deleted,
                row_number() over (
                    partition by versions.record_id
                    order by
                        case
                            when versions.updated_at <= {{ tailor.as_of() }} then versions.updated_at
                        end desc nulls last,
                        versions.updated_at asc
                ) as version_rank
            from {{ relation }} as versions
            -- a case, not an or: the payload's creation time is parsed only for the versions later than as_of
            where case
                when versions.updated_at <= {{ tailor.as_of() }} then true
                else not versions.is_deleted
                    and {{ tailor.to_timestamp_tz(created_expression) }}
                    <= {{ tailor.as_of() }}
            end
        ) as ranked
        where ranked.version_rank = 1 and not ranked.is_deleted
    ) as picked
        on picked_versions.record_id = picked.record_id and picked_versions.updated_at = picked.updated_at
{%- endmacro %}


{#- The as-of state of a base table of immutable records (Klaviyo events): every record written at or before
    as_of() and not deleted, all its columns. No version pick: an immutable record has one version. -#}
{% macro immutable_as_of(relation, key_column, raw_table) -%}
    select records.*
    from {{ relation }} as records
    where {{ tailor._immutable_written_by_as_of('records') }}
        and {{ tailor.not_quarantined(raw_table, 'records.' ~ key_column, 'records.updated_at') }}
{%- endmacro %}

{% macro _immutable_written_by_as_of(alias) -%}
    {{ alias }}.updated_at <= {{ tailor.as_of() }} and not {{ alias }}.is_deleted
        and {{ tailor.loaded_by_known_at(alias) }}
{%- endmacro %}


{#- Per UTC day of day_column, how many records immutable_as_of(relation, key_column, raw_table) returns that also meet
    `condition` (over the alias `records`), as (record_date, records), without reading a key: the records written by
    as_of, less those of them the gate quarantined (joined on the quarantined keys only, none in a clean hour). At 1M
    customers the keys of the 52M events are most of what a scan of them reads. -#}
{% macro immutable_as_of_day_counts(relation, key_column, raw_table, day_column, condition='true') -%}
    select
        counted.record_date,
        sum(counted.records) as records
    from (
        select
            {{ tailor.utc_date('records.' ~ day_column) }} as record_date,
            count(*) as records
        from {{ relation }} as records
        where {{ tailor._immutable_written_by_as_of('records') }} and {{ condition }}
        group by {{ tailor.utc_date('records.' ~ day_column) }}

        union all

        select
            {{ tailor.utc_date('records.' ~ day_column) }} as record_date,
            -count(*) as records
        from {{ relation }} as records
        inner join ({{ tailor.quarantined_version_keys(raw_table) }}) as quarantined
            on records.{{ key_column }} = quarantined.record_id and records.updated_at = quarantined.updated_at
        where {{ tailor._immutable_written_by_as_of('records') }} and {{ condition }}
        group by {{ tailor.utc_date('records.' ~ day_column) }}
    ) as counted
    group by counted.record_date
{%- endmacro %}


{#- True for a record version the raw quality gate did not quarantine (source quality.quarantine); with known_at,
    quarantines made after it do not count. -#}
{% macro not_quarantined(raw_table, record_id_expression, updated_at_expression) -%}
    {{ return(adapter.dispatch('not_quarantined', 'tailor')(raw_table, record_id_expression, updated_at_expression)) }}
{%- endmacro %}

{#- The distinct (record_id, updated_at) of the versions of raw_table the gate quarantined (with known_at, by then). -#}
{% macro quarantined_version_keys(raw_table) -%}
    select distinct
        quarantined.record_id,
        quarantined.updated_at
    {{ tailor._quarantined_versions(raw_table) }}
{%- endmacro %}

{% macro _quarantined_versions(raw_table) -%}
    from {{ source('quality', 'quarantine') }} as quarantined
    where quarantined.table_name = '{{ raw_table }}'
        {%- set known = tailor.known_at() %}
        {%- if known is not none %}
        and quarantined.quarantined_at <= {{ known }}
        {%- endif %}
{%- endmacro %}

{#- DuckDB: an uncorrelated NOT IN on the version key. DuckDB plans the correlated NOT EXISTS as a delim join that
    first materializes every column of the rows it filters: a count of the 52M events' staging view at 1M customers
    took 36 s and spilled a gigabyte, against 0.8 s with this form. The key columns are never null (tested on the
    base tables), so NOT IN's null rule changes nothing. -#}
{% macro default__not_quarantined(raw_table, record_id_expression, updated_at_expression) -%}
    ({{ record_id_expression }}, {{ updated_at_expression }}) not in (
        select
            quarantined.record_id,
            quarantined.updated_at
        {{ tailor._quarantined_versions(raw_table) }}
    )
{%- endmacro %}

{#- Postgres: NOT EXISTS, which it runs as a hash anti-join (NOT IN would be a subplan per row once the quarantine
    outgrows work_mem). -#}
{% macro postgres__not_quarantined(raw_table, record_id_expression, updated_at_expression) -%}
    not exists (
        select 1
        {{ tailor._quarantined_versions(raw_table) }}
            and quarantined.record_id = {{ record_id_expression }}
            and quarantined.updated_at = {{ updated_at_expression }}
    )
{%- endmacro %}
