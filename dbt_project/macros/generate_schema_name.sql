{#- Layers land in schemas named after them (base, staging, intermediate, marts, seeds) rather than dbt's default
    "<target schema>_<custom>", so the same names hold on DuckDB and Postgres and in every query a user writes. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
