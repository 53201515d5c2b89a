{#- A deterministic text key: md5 of the parts cast to text, nulls as '_null_', joined with '-'.
    Same inputs give the same key on every adapter (dbt_utils.generate_surrogate_key's recipe). -#}
{% macro surrogate_key(parts) -%}
    {%- set fields = [] -%}
    {%- for part in parts -%}
        {%- do fields.append("coalesce(cast(" ~ part ~ " as " ~ dbt.type_string() ~ "), '_null_')") -%}
        {%- if not loop.last -%}{%- do fields.append("'-'") -%}{%- endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(fields)) }}
{%- endmacro %}
