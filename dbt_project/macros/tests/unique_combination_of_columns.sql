{#- Generic test: no two rows share the same values of the given columns (a composite key).
    Usage in a models yml:
      data_tests:
        - tailor.unique_combination_of_columns:   (or just unique_combination_of_columns)
            arguments:
              combination_of_columns: [customer_id, as_of_date] -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns = combination_of_columns | join(', ') -%}
    select {{ columns }}, count(*) as duplicate_rows
    from {{ model }}
    group by {{ columns }}
    having count(*) > 1
{% endtest %}
