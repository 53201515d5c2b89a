{#- The one record that represents a source for each unified customer: of the customer's records in `records` (a
    CTE of the model, one row per source record), the most recently updated, ties to the lowest record id. Joins
    through the model's `crosswalk` CTE (source, source_record_id, customer_id). Returns customer_id, every column of
    `records` and source_rank (always 1). A select for a CTE body. -#}
{% macro latest_record_per_customer(records, crosswalk_source, record_id) -%}
    select ranked.*
    from (
        select
            crosswalk.customer_id,
            {{ records }}.*,
            row_number() over (
                partition by crosswalk.customer_id
                order by {{ records }}.updated_at desc, {{ records }}.{{ record_id }} asc
            ) as source_rank
        from crosswalk
        inner join {{ records }}
            on
                crosswalk.source = '{{ crosswalk_source }}'
                and crosswalk.source_record_id = {{ records }}.{{ record_id }}
    ) as ranked
    where ranked.source_rank = 1
{%- endmacro %}
