-- The recommender's lists (ml.customer_recommendations) of the served model version per as-of date: one row per
-- (customer_id, as_of_date, rank). Served = the version of the date's latest scoring run of
-- ml.customer_recommendations (stg_ml__scoring_runs).
with

recommendations as (
    select * from {{ source('ml', 'customer_recommendations') }}
),

served as (
    select
        as_of_date,
        model_version
    from {{ ref('stg_ml__scoring_runs') }}
    where is_served and table_name = 'ml.customer_recommendations'
),

final as (
    select
        recommendations.customer_id,
        recommendations.as_of_date,
        recommendations.model_version,
        recommendations.rank,
        recommendations.product_id,
        recommendations.score,
        recommendations.reason
    from recommendations
    inner join served
        on
            recommendations.as_of_date = served.as_of_date
            and recommendations.model_version = served.model_version
)

select * from final
