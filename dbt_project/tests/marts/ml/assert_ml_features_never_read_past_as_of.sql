-- Features must never see the future: no model upstream of customer_features (or of the marketing marts, the
-- product interactions and products) may be one of the models that read past as_of for churn labels. Checked on the
-- DAG at compile time; returns one row per offending dependency.
{%- set past_readers = [
    'model.tailor.churn_labels',
    'model.tailor.int_orders_in_churn_horizon',
    'model.tailor.int_order_loads_summarized',
    'model.tailor.stg_loads__watermarks',
] -%}
{%- set guarded = [
    'model.tailor.customer_features',
    'model.tailor.customer_rfm',
    'model.tailor.customer_engagement',
    'model.tailor.customer_product_affinity',
    'model.tailor.customer_product_interactions',
    'model.tailor.products',
    'model.tailor.email_events',
] -%}
{%- set offending = [] -%}
{%- if execute -%}
    {%- for start in guarded -%}
        {%- set seen = [] -%}
        {%- set queue = [start] -%}
        {#- breadth-first over depends_on; bounded by nodes + edges -#}
        {%- for _ in range((graph.nodes | length) * 20) -%}
            {%- if queue | length > 0 -%}
                {%- set node_id = queue.pop(0) -%}
                {%- if node_id not in seen -%}
                    {%- do seen.append(node_id) -%}
                    {%- if node_id in past_readers -%}{%- do offending.append((start, node_id)) -%}{%- endif -%}
                    {%- set node = graph.nodes.get(node_id) -%}
                    {%- if node is not none -%}
                        {%- for parent in node.depends_on.nodes -%}{%- do queue.append(parent) -%}{%- endfor -%}
                    {%- endif -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
{%- endif %}

{% if offending | length > 0 -%}
{%- for start, node_id in offending %}
select
    '{{ start }}' as guarded_model,
    '{{ node_id }}' as reads_past_as_of
{%- if not loop.last %}
union all
{%- endif %}
{%- endfor %}
{%- else -%}
select
    cast(null as {{ dbt.type_string() }}) as guarded_model,
    cast(null as {{ dbt.type_string() }}) as reads_past_as_of
where 1 = 0
{%- endif %}
