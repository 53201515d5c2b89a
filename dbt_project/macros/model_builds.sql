{#- meta.model_builds: per model, the as-of its latest successful build was made for. Written by the build itself
    (on-run-end, in dbt's own connection, so no other process's build can come between the models and the record):
    the feed is built in a later step and checks its inputs are still as of its date (tailor.export.feed), which an
    hourly build or another day's run may have changed meanwhile. The feed's own models are left out, and so are
    models no longer in the project (renamed or removed: their record would make every feed build rebuild). DuckDB
    only. -#}
{% macro record_model_builds(results) %}
    {%- if execute and target.type == 'duckdb' -%}
        {%- set built = [] -%}
        {%- for result in results -%}
            {%- if result.node.resource_type == 'model' and result.status == 'success'
                  and 'feed' not in result.node.tags -%}
                {%- do built.append("'" ~ result.node.name ~ "'") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if built -%}
            {%- do run_query("create schema if not exists meta") -%}
            {%- do run_query("create table if not exists meta.model_builds (model varchar primary key, "
                             ~ "as_of_at timestamptz not null, built_at timestamptz not null)") -%}
            {%- do run_query("insert or replace into meta.model_builds select unnest([" ~ built | join(", ")
                             ~ "]), " ~ tailor.as_of() ~ ", now()") -%}
            {%- set models = [] -%}
            {%- for node in graph.nodes.values() if node.resource_type == 'model' and 'feed' not in node.tags -%}
                {%- do models.append("'" ~ node.name ~ "'") -%}
            {%- endfor -%}
            {%- do run_query("delete from meta.model_builds where model not in (" ~ models | join(", ") ~ ")") -%}
            {%- do adapter.commit() -%}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
