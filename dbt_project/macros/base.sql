{#- The base layer (models/staging/<source>/base/): incremental tables holding one typed row per raw record
    version, whatever as_of is. raw.* is append-only (the loader only inserts; a version is never updated or
    removed) and unique on (record_id, updated_at), so a version parsed once never needs parsing again.

    raw_versions_to_parse(relation, key_column): the raw versions (record_id, updated_at, payload, is_deleted,
    batch_id, extracted_at) a base model over `relation` still has to parse: on a full build every version; on an
    incremental run
    those whose (record_id, updated_at) is not in the model's table yet (key_column is the table's name for
    record_id). Exact whatever the batches were: the anti-join is on the version key, not on batch_id (a batch id is
    a hash of source, entity and window, so a window landed again keeps its id and may add versions to it, and a
    lookback overlap spreads one version's copies over several batches). The batch ids only narrow the search: a
    batch whose rows all have their parsed copy (as many rows here as in raw for that id; each parsed row keeps its
    raw row's batch_id) holds nothing new, so the anti-join reads only the rows of batches with fewer rows here than
    in raw. Both sides are typed columns and a count per batch: no payload of a known version is read. -#}
{% macro raw_versions_to_parse(relation, key_column) -%}
    select
        raw_versions.record_id,
        raw_versions.updated_at,
        raw_versions.payload,
        raw_versions.is_deleted,
        raw_versions.batch_id,
        raw_versions.extracted_at
    from {{ relation }} as raw_versions
    {%- if is_incremental() %}
    where
        raw_versions.batch_id in (
            select raw_batches.batch_id
            from (
                select
                    batch_id,
                    count(*) as versions
                from {{ relation }}
                group by batch_id
            ) as raw_batches
            left join (
                select
                    batch_id,
                    count(*) as versions
                from {{ this }}
                group by batch_id
            ) as parsed_batches
                on raw_batches.batch_id = parsed_batches.batch_id
            where parsed_batches.batch_id is null or parsed_batches.versions < raw_batches.versions
        )
        and not exists (
            select 1
            from {{ this }} as parsed
            where
                parsed.{{ key_column }} = raw_versions.record_id
                and parsed.updated_at = raw_versions.updated_at
        )
    {%- endif %}
{%- endmacro %}


{#- For a base table of items nested in a parent's versions (order lines, refund lines, product variants): the raw
    parent versions (record_id, updated_at, payload, and the parent's version_id) whose items the model still has to
    parse. Driven by the parent's base table, which counts each version's items (count_column): a version with items
    that are not in this table yet (no row with its version id) is parsed; a version without items is never read
    again, so an order without refunds costs nothing on the next run. version_column names the parent's version id,
    in the parent's base table and in this one (e.g. order_version_id).
    An incremental run also narrows raw.* to the batches of those versions (the parent's row keeps its raw row's
    batch_id): DuckDB pushes that list into the scan of raw.*, which then skips the row groups of every other batch
    by their min/max, so no other payload is read (at 1M customers, after one hour: 13-18 s -> 1-6 s). The full
    build keeps the plain join: with the pending versions as a CTE, DuckDB built the join on the payloads' side and
    ran out of its budget at 1M customers. -#}
{% macro raw_parent_versions_to_parse(relation, parent_base, parent_key, count_column, version_column) -%}
    select
        raw_versions.record_id,
        raw_versions.updated_at,
        raw_versions.payload,
        parent_versions.{{ version_column }}
    from {{ relation }} as raw_versions
    inner join {{ parent_base }} as parent_versions
        on
            raw_versions.record_id = parent_versions.{{ parent_key }}
            and raw_versions.updated_at = parent_versions.updated_at
    where
        parent_versions.{{ count_column }} > 0
        {%- if is_incremental() %}
        and not exists (
            select 1
            from {{ this }} as parsed
            where parsed.{{ version_column }} = parent_versions.{{ version_column }}
        )
        and raw_versions.batch_id in (
            select pending_versions.batch_id
            from {{ parent_base }} as pending_versions
            left join {{ this }} as parsed
                on pending_versions.{{ version_column }} = parsed.{{ version_column }}
            where pending_versions.{{ count_column }} > 0 and parsed.{{ version_column }} is null
        )
        {%- endif %}
{%- endmacro %}


{#- The select of a base model's raw versions with their payload's text fields as columns: `versions` names the
    relation or CTE of raw_versions_to_parse; `fields` maps column names to JSON paths, all read in one call
    (tailor.json_texts: one parse of each document, not one per field); `extra` maps column names to expressions
    over `<versions>.payload` that need another JSON function (an array's length, a tag list). Returns record_id,
    updated_at, is_deleted, batch_id, extracted_at, the extra columns, then the fields, as text. -#}
{% macro raw_version_texts(versions, fields, extra={}) -%}
    select
        extracted.record_id,
        extracted.updated_at,
        extracted.is_deleted,
        extracted.batch_id,
        extracted.extracted_at,
        {%- for name in extra %}
        extracted.{{ name }},
        {%- endfor %}
        {{ tailor.json_texts_columns('extracted.payload_texts', fields) }}
    from (
        select
            {{ versions }}.record_id,
            {{ versions }}.updated_at,
            {{ versions }}.is_deleted,
            {{ versions }}.batch_id,
            {{ versions }}.extracted_at,
            {%- for name, expression in extra.items() %}
            {{ expression }} as {{ name }},
            {%- endfor %}
            {{ tailor.json_texts(versions ~ '.payload', fields) }} as payload_texts
        from {{ versions }}
    ) as extracted
{%- endmacro %}


{#- Post-hook of the base layer: fresh planner statistics on Postgres after each insert. A table made by CTAS or
    grown by an append has none until autovacuum gets to it, and the staging views' joins over a table the planner
    thinks tiny become nested loops. DuckDB keeps its statistics up to date itself: nothing to do. -#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch('analyze_relation', 'tailor')(relation)) }}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    analyze {{ relation }}
{%- endmacro %}
