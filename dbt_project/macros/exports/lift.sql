{#- The holdout experiment's statistics: treatment against holdout, by the normal approximation (DECISIONLOG.md,
    "The feed: lift readout"). Kept in a macro so that exports.feed_lift and the A/A test (tests/integration/
    test_dbt_feed.py, many salts over one population) compute exactly the same numbers.

    lift_statistics(outcomes, group_by, z_critical=none) returns a select, for a CTE body or a subquery:
      outcomes    a relation or CTE name: one row per customer and group, with the group_by columns,
                  experiment_group ('treatment' | 'holdout'), converted (1 when the customer converted, else 0) and
                  net_sales (a number; 0 for a customer without orders)
      group_by    the columns one readout is computed per (e.g. ['as_of_date'])
      z_critical  the two-sided critical value (default: the var lift_z_critical, 1.959964 for 95 %)
    One row per group and metric:
      metric               'conversion' (share of customers with an order) or 'net_sales' (net sales per customer)
      treatment_customers, holdout_customers
      treatment_total, holdout_total     conversions, or net sales summed
      treatment_value, holdout_value     conversion rate, or mean net sales per customer
      difference                         treatment_value - holdout_value (the lift, absolute)
      standard_error                     of the difference, for the interval: the larger of the unpooled one,
                                         sqrt(v_t / n_t + v_h / n_h) with v each group's variance (p (1 - p) for a
                                         rate, Wald; the sample variance for net sales, Welch), and the null one
                                         below. The larger, so that an interval excluding 0 always comes with
                                         is_significant: with few buyers in the holdout its sample variance is
                                         mostly too small, and Welch's interval alone excluded 0 in 15 % of A/A
                                         splits of the demo shop
      ci_lower, ci_upper                 difference -/+ z_critical * standard_error
      z_statistic                        difference over the null standard error: the difference's standard error
                                         when treatment and holdout are the same population (the null of no
                                         lift, what random assignment gives in an A/A split), sqrt(v_0 (1 / n_t +
                                         1 / n_h)) with v_0 the variance of both groups together: p (1 - p) of the
                                         pooled rate (the two-proportion z-test), the sample variance of every
                                         customer's net sales (the randomization variance of a difference in
                                         means). Normal, not t: the groups are hundreds of customers or more
      is_significant                     |z_statistic| > z_critical; false when z cannot be computed (an empty
                                         group, no variance at all)
-#}
{% macro lift_statistics(outcomes, group_by, z_critical=none) -%}
    {%- set z = z_critical if z_critical is not none else var('lift_z_critical') -%}
    {%- set double = tailor.type_double() -%}
    select
        {%- for column in group_by %}
        measured.{{ column }},
        {%- endfor %}
        measured.metric,
        measured.treatment_customers,
        measured.holdout_customers,
        measured.treatment_total,
        measured.holdout_total,
        measured.treatment_value,
        measured.holdout_value,
        measured.difference,
        measured.standard_error,
        measured.difference - {{ z }} * measured.standard_error as ci_lower,
        measured.difference + {{ z }} * measured.standard_error as ci_upper,
        measured.difference / nullif(measured.null_standard_error, 0) as z_statistic,
        coalesce(abs(measured.difference / nullif(measured.null_standard_error, 0)) > {{ z }}, false)
            as is_significant
    from (
        -- the interval's standard error: the larger of the unpooled and the null one
        select
            errors.*,
            case
                when errors.unpooled_standard_error is null
                    or errors.null_standard_error > errors.unpooled_standard_error
                    then errors.null_standard_error
                else errors.unpooled_standard_error
            end as standard_error
        from (
            select
                {%- for column in group_by %}
                per_metric.{{ column }},
                {%- endfor %}
                per_metric.metric,
                per_metric.treatment_customers,
                per_metric.holdout_customers,
                per_metric.treatment_total,
                per_metric.holdout_total,
                per_metric.treatment_total / nullif(per_metric.treatment_customers, 0) as treatment_value,
                per_metric.holdout_total / nullif(per_metric.holdout_customers, 0) as holdout_value,
                per_metric.treatment_total / nullif(per_metric.treatment_customers, 0)
                - per_metric.holdout_total / nullif(per_metric.holdout_customers, 0) as difference,
                sqrt(
                    per_metric.treatment_variance / nullif(per_metric.treatment_customers, 0)
                    + per_metric.holdout_variance / nullif(per_metric.holdout_customers, 0)
                ) as unpooled_standard_error,
                sqrt(
                    per_metric.null_variance * (
                        1.0 / nullif(per_metric.treatment_customers, 0)
                        + 1.0 / nullif(per_metric.holdout_customers, 0)
                    )
                ) as null_standard_error
            from (
                -- per metric: the groups' totals and variances, and the variance of both groups together
                select
                    {%- for column in group_by %}
                    summarized.{{ column }},
                    {%- endfor %}
                    metrics.metric,
                    summarized.treatment_customers,
                    summarized.holdout_customers,
                    case metrics.metric
                        when 'conversion' then summarized.treatment_conversions
                        else summarized.treatment_net_sales
                    end as treatment_total,
                    case metrics.metric
                        when 'conversion' then summarized.holdout_conversions
                        else summarized.holdout_net_sales
                    end as holdout_total,
                    case metrics.metric
                        when 'conversion' then summarized.treatment_rate * (1 - summarized.treatment_rate)
                        else summarized.treatment_net_sales_variance
                    end as treatment_variance,
                    case metrics.metric
                        when 'conversion' then summarized.holdout_rate * (1 - summarized.holdout_rate)
                        else summarized.holdout_net_sales_variance
                    end as holdout_variance,
                    case metrics.metric
                        when 'conversion' then summarized.pooled_rate * (1 - summarized.pooled_rate)
                        else summarized.net_sales_variance
                    end as null_variance
                from (
                    select
                        counted.*,
                        counted.treatment_conversions / nullif(counted.treatment_customers, 0) as treatment_rate,
                        counted.holdout_conversions / nullif(counted.holdout_customers, 0) as holdout_rate,
                        (counted.treatment_conversions + counted.holdout_conversions)
                        / nullif(counted.treatment_customers + counted.holdout_customers, 0) as pooled_rate
                    from (
                        select
                            {%- for column in group_by %}
                            outcomes.{{ column }},
                            {%- endfor %}
                            {{ tailor._lift_group_sum('1', 'treatment', double) }} as treatment_customers,
                            {{ tailor._lift_group_sum('1', 'holdout', double) }} as holdout_customers,
                            {{ tailor._lift_group_sum('outcomes.converted', 'treatment', double) }}
                                as treatment_conversions,
                            {{ tailor._lift_group_sum('outcomes.converted', 'holdout', double) }}
                                as holdout_conversions,
                            {{ tailor._lift_group_sum('outcomes.net_sales', 'treatment', double) }}
                                as treatment_net_sales,
                            {{ tailor._lift_group_sum('outcomes.net_sales', 'holdout', double) }} as holdout_net_sales,
                            var_samp(
                                case
                                    when outcomes.experiment_group = 'treatment'
                                        then cast(outcomes.net_sales as {{ double }})
                                end
                            ) as treatment_net_sales_variance,
                            var_samp(
                                case
                                    when outcomes.experiment_group = 'holdout'
                                        then cast(outcomes.net_sales as {{ double }})
                                end
                            ) as holdout_net_sales_variance,
                            var_samp(cast(outcomes.net_sales as {{ double }})) as net_sales_variance
                        from {{ outcomes }} as outcomes
                        group by
                            {%- for column in group_by %}
                            outcomes.{{ column }}{{ ',' if not loop.last }}
                            {%- endfor %}
                    ) as counted
                ) as summarized
                cross join (values ('conversion'), ('net_sales')) as metrics (metric)
            ) as per_metric
        ) as errors
    ) as measured
{%- endmacro %}

{#- The sum of a value over one experiment group's rows (exact: summed before the cast), as a double. -#}
{% macro _lift_group_sum(value, group, double) -%}
    cast(sum(case when outcomes.experiment_group = '{{ group }}' then {{ value }} else 0 end) as {{ double }})
{%- endmacro %}
