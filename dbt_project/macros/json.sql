{#- JSON access, portable across DuckDB (JSON type) and Postgres (jsonb).

    A path is a list of object keys (strings) and array indexes (integers), e.g. ['lineItems', 0, 'id'].
      json_text(column, path)              the value at path as text (null when absent or JSON null)
      json_value(column, path)             the value at path as JSON (for arrays and objects)
      json_array_join(column, path, alias) a from-clause item: one row per element of the array at path, each
                                           element as JSON in `<alias>.value` (no row when absent or empty); for
                                           small arrays only, see json_array_rows
      json_string_array_agg(column, path)  an array of strings joined into one text with ', ' (null when empty)
      json_array_has(column, path, field, value)
                                           true when the array of objects at path has an element whose field = value
      json_array_length(column, path)      the number of elements of the array at path (0 when absent or not an array)
      json_nested_array_length(column, path, inner_path)
                                           the total number of elements of the arrays at inner_path inside each element
                                           of the array at path (e.g. refund line items over all refunds); 0 when none

    Many fields of one document at the cost of one parse. Each json_text parses its document again on DuckDB, which
    made one call per field the bulk of a full build; the base models with many fields (events, orders, customers,
    profiles, contacts) therefore take them in one list (at L: events 3.9x, orders 2.6x, profiles 4.5x, customers
    3.8x and contacts 5x faster; tailor.raw_version_texts in macros/base.sql), while those with a few (products,
    refunds, lines) keep the plainer form:
      json_texts(column, fields)           the text at each path of `fields` (a mapping column name -> path), in
                                           one list (DuckDB) or text array (Postgres), in the mapping's order
      json_texts_columns(texts, fields)    select-list items taking each field out of that list, named as in
                                           `fields` (both lists index from 1)
      json_parse(text)                     JSON text as a JSON value again: an array or object that json_texts read
                                           as text (the refunds of an order), parsed alone

    Arrays that can be long (an order's line items: a wholesale order has thousands). DuckDB's json_each and
    json_extract of '[*]' cost memory and time quadratic in the array's length (an order of 1,000 lines ran out of
    3 GB); json_transform parses each document once into typed structs, linear (measured in DECISIONLOG.md):
      json_array_rows(column, path, fields)  a select-list item: one row per element of the array at path (none when
                                           absent, empty or not an array), holding the element's `fields` (a mapping
                                           column name -> path of object keys inside the element)
      json_row_texts(row, fields)          select-list items: each field of such a row as text, named as in `fields`
                                           (the same text json_text gives) -#}

{% macro json_text(column, path) -%}
    {{ return(adapter.dispatch('json_text', 'tailor')(column, path)) }}
{%- endmacro %}

{% macro duckdb__json_text(column, path) -%}
    json_extract_string({{ column }}, '{{ tailor._duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_text(column, path) -%}
    ({{ column }} #>> {{ tailor._postgres_json_path(path) }})
{%- endmacro %}


{% macro json_value(column, path) -%}
    {{ return(adapter.dispatch('json_value', 'tailor')(column, path)) }}
{%- endmacro %}

{% macro duckdb__json_value(column, path) -%}
    json_extract({{ column }}, '{{ tailor._duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_value(column, path) -%}
    ({{ column }} #> {{ tailor._postgres_json_path(path) }})
{%- endmacro %}


{% macro json_parse(expression) -%}
    {{ return(adapter.dispatch('json_parse', 'tailor')(expression)) }}
{%- endmacro %}

{% macro duckdb__json_parse(expression) -%}
    cast({{ expression }} as json)
{%- endmacro %}

{% macro postgres__json_parse(expression) -%}
    cast({{ expression }} as jsonb)
{%- endmacro %}


{% macro json_array_join(column, path, alias) -%}
    {{ return(adapter.dispatch('json_array_join', 'tailor')(column, path, alias)) }}
{%- endmacro %}

{% macro duckdb__json_array_join(column, path, alias) -%}
    cross join json_each({{ column }}, '{{ tailor._duckdb_json_path(path) }}') as {{ alias }}
{%- endmacro %}

{% macro postgres__json_array_join(column, path, alias) -%}
    cross join lateral jsonb_array_elements(
        case
            when jsonb_typeof({{ column }} #> {{ tailor._postgres_json_path(path) }}) = 'array'
                then {{ column }} #> {{ tailor._postgres_json_path(path) }}
            else '[]'::jsonb
        end
    ) as {{ alias }} (value)
{%- endmacro %}


{% macro json_string_array_agg(column, path) -%}
    {{ return(adapter.dispatch('json_string_array_agg', 'tailor')(column, path)) }}
{%- endmacro %}

{% macro duckdb__json_string_array_agg(column, path) -%}
    nullif(array_to_string(cast(json_extract({{ column }}, '{{ tailor._duckdb_json_path(path) }}') as varchar []), ', '), '')
{%- endmacro %}

{% macro postgres__json_string_array_agg(column, path) -%}
    (
        select nullif(string_agg(tag.value, ', ' order by tag.ordinality), '')
        from jsonb_array_elements_text(
            case
                when jsonb_typeof({{ column }} #> {{ tailor._postgres_json_path(path) }}) = 'array'
                    then {{ column }} #> {{ tailor._postgres_json_path(path) }}
                else '[]'::jsonb
            end
        ) with ordinality as tag (value, ordinality)
    )
{%- endmacro %}


{% macro json_array_has(column, path, field, value) -%}
    {{ return(adapter.dispatch('json_array_has', 'tailor')(column, path, field, value)) }}
{%- endmacro %}

{% macro duckdb__json_array_has(column, path, field, value) -%}
    coalesce(list_contains(json_extract_string({{ column }}, '{{ tailor._duckdb_json_path(path) }}[*]."{{ field }}"'), '{{ value }}'), false)
{%- endmacro %}

{% macro postgres__json_array_has(column, path, field, value) -%}
    coalesce(({{ column }} #> {{ tailor._postgres_json_path(path) }}) @> '[{"{{ field }}": "{{ value }}"}]'::jsonb, false)
{%- endmacro %}


{% macro json_array_length(column, path) -%}
    {{ return(adapter.dispatch('json_array_length', 'tailor')(column, path)) }}
{%- endmacro %}

{% macro duckdb__json_array_length(column, path) -%}
    cast(coalesce(json_array_length({{ column }}, '{{ tailor._duckdb_json_path(path) }}'), 0) as integer)
{%- endmacro %}

{% macro postgres__json_array_length(column, path) -%}
    cast(
        case
            when jsonb_typeof({{ column }} #> {{ tailor._postgres_json_path(path) }}) = 'array'
                then jsonb_array_length({{ column }} #> {{ tailor._postgres_json_path(path) }})
            else 0
        end as integer
    )
{%- endmacro %}


{% macro json_nested_array_length(column, path, inner_path) -%}
    {{ return(adapter.dispatch('json_nested_array_length', 'tailor')(column, path, inner_path)) }}
{%- endmacro %}

{#- One wildcard path instead of a json_each subquery per document: one parse, no join (the order base table's
    parse 35 % faster); the wildcard runs over the outer array only (an order's refunds: a few). -#}
{% macro duckdb__json_nested_array_length(column, path, inner_path) -%}
    cast(coalesce(list_sum(json_array_length(
        {{ column }}, '{{ tailor._duckdb_json_path(path) }}[*]{{ tailor._duckdb_json_path(inner_path)[1:] }}'
    )), 0) as integer)
{%- endmacro %}

{% macro postgres__json_nested_array_length(column, path, inner_path) -%}
    cast(coalesce((
        select sum({{ tailor.postgres__json_array_length('outer_element.value', inner_path) }})
        from jsonb_array_elements(
            case
                when jsonb_typeof({{ column }} #> {{ tailor._postgres_json_path(path) }}) = 'array'
                    then {{ column }} #> {{ tailor._postgres_json_path(path) }}
                else '[]'::jsonb
            end
        ) as outer_element (value)
    ), 0) as integer)
{%- endmacro %}


{% macro json_texts(column, fields) -%}
    {{ return(adapter.dispatch('json_texts', 'tailor')(column, fields)) }}
{%- endmacro %}

{% macro duckdb__json_texts(column, fields) -%}
    json_extract_string({{ column }}, [
        {%- for path in fields.values() %}
        '{{ tailor._duckdb_json_path(path) }}'{{ ',' if not loop.last }}
        {%- endfor %}
    ])
{%- endmacro %}

{% macro postgres__json_texts(column, fields) -%}
    array[
        {%- for path in fields.values() %}
        ({{ column }} #>> {{ tailor._postgres_json_path(path) }}){{ ',' if not loop.last }}
        {%- endfor %}
    ]::text []
{%- endmacro %}

{% macro json_texts_columns(texts, fields) -%}
    {%- for name in fields %}
    {{ texts }}[{{ loop.index }}] as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{% macro json_array_rows(column, path, fields) -%}
    {{ return(adapter.dispatch('json_array_rows', 'tailor')(column, path, fields)) }}
{%- endmacro %}

{% macro duckdb__json_array_rows(column, path, fields) -%}
    {%- set element = tailor._duckdb_json_schema(fields.values()) -%}
    {%- set schema = namespace(value=[element]) -%}
    {%- for key in path | reverse -%}
        {%- set schema.value = {key: schema.value} -%}
    {%- endfor -%}
    unnest(json_transform({{ column }}, '{{ tailor._duckdb_json_schema_text(schema.value) }}')
        {%- for key in path %}."{{ key }}"{% endfor %})
{%- endmacro %}

{% macro postgres__json_array_rows(column, path, fields) -%}
    jsonb_array_elements(
        case
            when jsonb_typeof({{ column }} #> {{ tailor._postgres_json_path(path) }}) = 'array'
                then {{ column }} #> {{ tailor._postgres_json_path(path) }}
            else '[]'::jsonb
        end
    )
{%- endmacro %}

{% macro json_row_texts(row, fields) -%}
    {{ return(adapter.dispatch('json_row_texts', 'tailor')(row, fields)) }}
{%- endmacro %}

{% macro duckdb__json_row_texts(row, fields) -%}
    {%- for name, path in fields.items() %}
    {{ row }}{% for key in path %}."{{ key }}"{% endfor %} as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{% macro postgres__json_row_texts(row, fields) -%}
    {%- for name, path in fields.items() %}
    ({{ row }} #>> {{ tailor._postgres_json_path(path) }}) as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- The json_transform structure reading `paths` (lists of object keys) as text: {"a": {"b": "VARCHAR"}}. -#}
{% macro _duckdb_json_schema(paths) -%}
    {%- set schema = {} -%}
    {%- for path in paths -%}
        {%- set node = namespace(value=schema) -%}
        {%- for key in path -%}
            {%- if key is number or key == '' -%}
                {{ exceptions.raise_compiler_error("json_array_rows reads object keys only, not " ~ path) }}
            {%- elif loop.last -%}
                {%- if node.value.get(key, 'VARCHAR') != 'VARCHAR' -%}
                    {{ exceptions.raise_compiler_error("json_array_rows: " ~ path ~ " is both text and an object") }}
                {%- endif -%}
                {%- do node.value.update({key: 'VARCHAR'}) -%}
            {%- else -%}
                {%- if node.value.get(key, {}) is string -%}
                    {{ exceptions.raise_compiler_error("json_array_rows: " ~ path ~ " is both text and an object") }}
                {%- endif -%}
                {%- do node.value.setdefault(key, {}) -%}
                {%- set node.value = node.value[key] -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(schema) }}
{%- endmacro %}


{#- That structure as JSON text for a SQL literal (keys are JSON object keys: no quotes, backslashes or apostrophes). -#}
{% macro _duckdb_json_schema_text(node) -%}
    {%- if node is string -%}
        "{{ node }}"
    {%- elif node is mapping -%}
        {%- set items = [] -%}
        {%- for key, child in node.items() -%}
            {%- if '"' in key or '\\' in key or "'" in key -%}
                {{ exceptions.raise_compiler_error("json_array_rows: unsupported character in the key " ~ key) }}
            {%- endif -%}
            {%- do items.append('"' ~ key ~ '": ' ~ tailor._duckdb_json_schema_text(child)) -%}
        {%- endfor -%}
        { {{- items | join(', ') -}} }
    {%- else -%}
        [{{ tailor._duckdb_json_schema_text(node[0]) }}]
    {%- endif -%}
{%- endmacro %}


{#- '$."a"[0]."b c"' for DuckDB; keys are always quoted so spaces and '$' in keys are safe. -#}
{% macro _duckdb_json_path(path) -%}
    {%- set parts = ['$'] -%}
    {%- for key in path -%}
        {%- if key is number -%}
            {%- do parts.append('[' ~ key ~ ']') -%}
        {%- else -%}
            {%- do parts.append('."' ~ (key | replace("'", "''")) ~ '"') -%}
        {%- endif -%}
    {%- endfor -%}
    {{ parts | join('') }}
{%- endmacro %}

{#- array['a', '0', 'b c'] for Postgres' #> / #>> operators. -#}
{% macro _postgres_json_path(path) -%}
    {%- set parts = [] -%}
    {%- for key in path -%}
        {%- do parts.append("'" ~ (key | string | replace("'", "''")) ~ "'") -%}
    {%- endfor -%}
    array[{{ parts | join(', ') }}]::text []
{%- endmacro %}
