-- No timestamp in the core marts (and the identity crosswalk) is later than the run's as_of: nothing from the
-- future leaks into a backfill. Every timestamp column of each relation is checked, found from the warehouse's
-- column types, so a column added later is covered too.
{%- set relations = [
    ref('customer_identity_crosswalk'), ref('customers'), ref('orders'), ref('order_lines'), ref('products'),
] -%}
{%- set checks = [] -%}
{%- if execute -%}
    {%- for relation in relations -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if 'timestamp' in column.data_type | lower -%}
                {%- do checks.append((relation, column.name)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
{%- endif %}

with

violations as (
    {%- for relation, column_name in checks %}
    select
        '{{ relation.identifier }}' as relation_name,
        '{{ column_name }}' as column_name,
        max({{ adapter.quote(column_name) }}) as latest_value
    from {{ relation }}
    where {{ adapter.quote(column_name) }} > {{ tailor.as_of() }}
    having count(*) > 0
    {%- if not loop.last %}

    union all
    {% endif -%}
    {%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as relation_name,
        cast(null as {{ dbt.type_string() }}) as column_name,
        cast(null as {{ tailor.type_timestamp_tz() }}) as latest_value
    where 1 = 0
    {%- endfor %}
)

select * from violations
