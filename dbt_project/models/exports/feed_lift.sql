-- The holdout experiment's readout as of as_of: for each cohort of the feed (every as_of_date in esp_feed built as of
-- a time up to as_of: its customers and their experiment groups), did treatment customers buy more than holdout
-- customers in the lift_horizon_days after the cohort's as_of_at? Orders are marts.orders' as of as_of:
-- non-cancelled, of a known customer, placed in (as_of_at, as_of_at + horizon] and by as_of (is_window_complete
-- says whether the whole window has passed). Two metrics, each one row: conversion (share of customers with an
-- order; two-proportion z-test) and net_sales (net sales per customer; Welch's z), with 95 % intervals
-- (lift_z_critical) by tailor.lift_statistics. Rebuilt whole on every feed build. DECISIONLOG.md, "The feed: lift
-- readout".
with

feed as (
    select
        as_of_date,
        as_of_at,
        customer_id,
        experiment_group,
        experiment_salt
    from {{ ref('esp_feed') }}
    where as_of_at <= {{ tailor.as_of() }}
),

cohorts as (
    select
        as_of_date,
        min(as_of_at) as as_of_at,
        min(experiment_salt) as experiment_salt,
        {{ tailor.add_days('min(as_of_at)', var('lift_horizon_days')) }} as window_end_at
    from feed
    group by as_of_date
),

orders as (
    select
        customer_id,
        ordered_at,
        net_sales_amount
    from {{ ref('orders') }}
    where not is_cancelled
        and customer_id is not null
        and ordered_at <= {{ tailor.as_of() }}
),

outcomes as (
    select
        feed.as_of_date,
        feed.customer_id,
        feed.experiment_group,
        case when count(orders.customer_id) > 0 then 1 else 0 end as converted,
        coalesce(sum(orders.net_sales_amount), 0) as net_sales
    from feed
    inner join cohorts
        on feed.as_of_date = cohorts.as_of_date
    left join orders
        on
            feed.customer_id = orders.customer_id
            and cohorts.as_of_at < orders.ordered_at
            and cohorts.window_end_at >= orders.ordered_at
    group by feed.as_of_date, feed.customer_id, feed.experiment_group
),

statistics as (
    {{ tailor.lift_statistics('outcomes', ['as_of_date']) }}
),

final as (
    select
        statistics.as_of_date,
        cohorts.as_of_at,
        cohorts.experiment_salt,
        statistics.metric,
        {{ var('lift_horizon_days') }} as horizon_days,
        cohorts.window_end_at,
        cohorts.window_end_at <= {{ tailor.as_of() }} as is_window_complete,
        cast(statistics.treatment_customers as integer) as treatment_customers,
        cast(statistics.holdout_customers as integer) as holdout_customers,
        cast(statistics.treatment_total as numeric(18, 2)) as treatment_total,
        cast(statistics.holdout_total as numeric(18, 2)) as holdout_total,
        cast(statistics.treatment_value as numeric(18, 6)) as treatment_value,
        cast(statistics.holdout_value as numeric(18, 6)) as holdout_value,
        cast(statistics.difference as numeric(18, 6)) as difference,
        cast(statistics.standard_error as numeric(18, 6)) as standard_error,
        cast(statistics.ci_lower as numeric(18, 6)) as ci_lower,
        cast(statistics.ci_upper as numeric(18, 6)) as ci_upper,
        cast(statistics.z_statistic as numeric(18, 6)) as z_statistic,
        cast({{ var('lift_z_critical') }} as {{ tailor.type_double() }}) as z_critical,
        statistics.is_significant,
        {{ tailor.as_of() }} as computed_as_of_at
    from statistics
    inner join cohorts
        on statistics.as_of_date = cohorts.as_of_date
)

select * from final
