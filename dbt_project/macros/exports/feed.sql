{#- Helpers of the personalization feed (models/exports/). Portable: DuckDB and Postgres give the same answers. -#}


{#- A value (a var's) as a SQL string literal, quotes doubled. -#}
{% macro string_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}


{#- The experiment's salt var as a SQL string literal. -#}
{% macro experiment_salt() -%}
    {{ tailor.string_literal(var('feed_experiment_salt')) }}
{%- endmacro %}


{#- A customer's experiment bucket in [0, 1): the first 32 bits of md5(salt || ':' || customer_id) over 2^32.
    Deterministic and stable (the same salt and customer give the same bucket on every date, run and database: md5 is
    in DuckDB and Postgres alike), uniform and independent of anything about the customer. salt is a SQL expression
    (default: the var feed_experiment_salt as a literal), so a query can assign many salts at once (the A/A test). -#}
{% macro experiment_bucket(customer_id, salt=none) -%}
    {%- set salt = salt if salt is not none else tailor.experiment_salt() -%}
    (
        cast({{ tailor.hex_to_bigint("substr(md5(" ~ salt ~ " || ':' || " ~ customer_id ~ "), 1, 8)") }}
            as {{ tailor.type_double() }})
        / 4294967296.0
    )
{%- endmacro %}


{#- 'holdout' when the customer's bucket is below holdout_share (default: the var feed_holdout_share), else
    'treatment'. So about holdout_share of customers are held out, the same ones on every date while the salt and the
    share stay; raising the share only moves treatment customers into the holdout, never the other way. -#}
{% macro experiment_group(customer_id, salt=none, holdout_share=none) -%}
    {%- set share = holdout_share if holdout_share is not none else var('feed_holdout_share') -%}
    case
        when {{ tailor.experiment_bucket(customer_id, salt) }} < {{ share }} then 'holdout'
        else 'treatment'
    end
{%- endmacro %}


{#- A text of hexadecimal digits (at most 15, so the value fits a bigint) as a bigint. -#}
{% macro hex_to_bigint(hex_text) -%}
    {{ return(adapter.dispatch('hex_to_bigint', 'tailor')(hex_text)) }}
{%- endmacro %}

{% macro default__hex_to_bigint(hex_text) -%}
    cast('0x' || {{ hex_text }} as bigint)
{%- endmacro %}

{% macro postgres__hex_to_bigint(hex_text) -%}
    cast(cast('x' || lpad({{ hex_text }}, 16, '0') as bit(64)) as bigint)
{%- endmacro %}


{#- True when the text matches the regular expression (a POSIX-style pattern both engines read alike). -#}
{% macro regex_matches(expression, pattern) -%}
    {{ return(adapter.dispatch('regex_matches', 'tailor')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro postgres__regex_matches(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern | replace("'", "''") }})$')
{%- endmacro %}


{#- An address the ESP accepts: local part, '@', dot-separated domain labels and a top-level domain of two or more
    letters, nothing else (the feed gate's email_regex, expectations/feed.yml). -#}
{% macro is_valid_email(expression) -%}
    coalesce({{ tailor.regex_matches(expression, "[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}") }}, false)
{%- endmacro %}


{#- Whole days from on_date (a date) to the next anniversary of birth_date on or after it: 0 on the birthday itself,
    364 or 365 the day after. Year-wrap safe: the anniversary in on_date's year, or, when that is already past, the
    one in the next year (so 31 December to a 2 January birthday is 2 days). A 29 February birthday falls on 28
    February in common years (the date arithmetic of both engines). Null without a birth date. -#}
{% macro days_until_birthday(birth_date, on_date) -%}
    {%- set years = "cast(extract(year from " ~ on_date ~ ") - extract(year from " ~ birth_date ~ ") as integer)" -%}
    {%- set this_year = "cast(" ~ dbt.dateadd('year', years, birth_date) ~ " as date)" -%}
    {%- set next_year = "cast(" ~ dbt.dateadd('year', years ~ " + 1", birth_date) ~ " as date)" -%}
    case
        when {{ birth_date }} is null then null
        when {{ this_year }} >= {{ on_date }} then {{ dbt.datediff(on_date, this_year, 'day') }}
        else {{ dbt.datediff(on_date, next_year, 'day') }}
    end
{%- endmacro %}


{#- One JSON array (as text) of one object per row of the group, in order_by's order: fields is a list of
    (key, expression) pairs, the object's keys in that order. Null for a group without rows (coalesce it to '[]').
    Numbers stay numbers, text is escaped by the engine. -#}
{% macro json_objects_agg(fields, order_by) -%}
    {{ return(adapter.dispatch('json_objects_agg', 'tailor')(fields, order_by)) }}
{%- endmacro %}

{#- DuckDB: an ordered list() is a holistic aggregate held whole in memory (the feed's lists at 1M customers needed
    over 3 GB that way); a plain list() sorted per group afterwards needs a third less and is faster. -#}
{% macro default__json_objects_agg(fields, order_by) -%}
    cast(to_json(list_transform(list_sort(list(struct_pack(
        sort_key := {{ order_by }},
        object := struct_pack(
            {%- for key, expression in fields %}
            "{{ key }}" := {{ expression }}{{ ',' if not loop.last }}
            {%- endfor %}
        )
    ))), lambda item: item.object)) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro postgres__json_objects_agg(fields, order_by) -%}
    cast(json_agg(json_build_object(
        {%- for key, expression in fields %}
        '{{ key }}', {{ expression }}{{ ',' if not loop.last }}
        {%- endfor %}
    ) order by {{ order_by }}) as text)
{%- endmacro %}
