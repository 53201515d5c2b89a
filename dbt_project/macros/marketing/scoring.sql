{#- A deterministic quintile score 1..5 of value_expr over the whole result set (a window function expression).

    score = 1 + floor(5 * (rank - 1) / n), where rank is the 1-based rank() of the row's value in the given direction
    and n the number of rows. Ties share the rank of their first position, so equal values always get equal scores
    (ntile() would split a tie by an arbitrary row order, differently per run and per database). A large tie can
    therefore skip scores: when 60% of customers have one order, they all score 1 and the next value scores 4.
    direction 'asc' gives the highest score to the highest value (frequency, monetary); 'desc' gives it to the lowest
    (recency in days: the most recent buyers score 5). -#}
{% macro quintile_score(value_expr, direction='asc') -%}
    {%- if direction not in ('asc', 'desc') -%}
        {{ exceptions.raise_compiler_error("quintile_score: direction must be 'asc' or 'desc', got " ~ direction) }}
    {%- endif -%}
    (1 + cast(floor(5.0 * (rank() over (order by {{ value_expr }} {{ direction }}) - 1) / count(*) over ()) as integer))
{%- endmacro %}

{#- The FM score: the mean of the frequency and monetary scores rounded half up, still 1..5. -#}
{% macro fm_score(f_score, m_score) -%}
    cast(floor(({{ f_score }} + {{ m_score }} + 1) / 2.0) as integer)
{%- endmacro %}

{#- x / y, null when y is 0 or null. -#}
{% macro safe_divide(numerator, denominator) -%}
    (({{ numerator }}) * 1.0 / nullif({{ denominator }}, 0))
{%- endmacro %}

{#- A 64-bit float type on every adapter (dbt.type_float() is a 32-bit FLOAT on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'tailor')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}
