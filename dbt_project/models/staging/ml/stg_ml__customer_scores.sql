-- The customer models' scores (ml.customer_scores) of the served model version per as-of date: one row per
-- (customer_id, as_of_date). Served = the version of the date's latest scoring run of ml.customer_scores
-- (stg_ml__scoring_runs).
with

scores as (
    select * from {{ source('ml', 'customer_scores') }}
),

served as (
    select
        as_of_date,
        model_version
    from {{ ref('stg_ml__scoring_runs') }}
    where is_served and table_name = 'ml.customer_scores'
),

final as (
    select
        scores.customer_id,
        scores.as_of_date,
        scores.model_version,
        scores.as_of_at,
        scores.segment_id,
        scores.segment_name,
        scores.churn_probability,
        scores.churn_model,
        scores.p_alive,
        scores.expected_orders_12m,
        scores.expected_net_sales_12m,
        scores.expected_next_order_date
    from scores
    inner join served
        on
            scores.as_of_date = served.as_of_date
            and scores.model_version = served.model_version
)

select * from final
