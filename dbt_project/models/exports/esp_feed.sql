-- The personalization feed as of as_of: one row per customer of the feed (consented, int_feed_customers_consented)
-- scored for as_of's date, with what email templates render: greeting, segment, churn risk, value, the product list
-- (JSON of esp_feed_recommendations), send hour, next best action and content blocks, and the experiment group
-- (holdout customers stay in the feed, flagged: the ESP sends them the non-personalized version): the fields of
-- int_feed_customer_fields with their lists. Scores, lists and send hours are the served model version's for the
-- date (the latest scoring run of each table, stg_ml__scoring_runs). A consented customer without a score for the
-- date (created after scoring) waits for the next scoring. Incremental by date (dbt_project.yml): a build replaces
-- its as_of_date only, past dates stay for feed_lift. DECISIONLOG.md, "The feed" and "The feed: memory".
{%- set as_of_date = tailor.utc_date(tailor.as_of()) %}

with

fields as (
    select *
    from {{ ref('int_feed_customer_fields') }}
),

lists as (
    select
        recommendations.customer_id,
        cast(count(*) as integer) as recommendation_count,
        {{ tailor.json_objects_agg([
            ('rank', 'recommendations.rank'),
            ('product_id', 'recommendations.product_id'),
            ('title', 'recommendations.product_title'),
            ('url', 'recommendations.product_url'),
            ('image_url', 'recommendations.image_url'),
            ('price', 'recommendations.price'),
            ('reason', 'recommendations.reason'),
        ], 'recommendations.rank') }} as recommendations
    from {{ ref('esp_feed_recommendations') }} as recommendations
    where recommendations.as_of_date = {{ as_of_date }}
    group by recommendations.customer_id
),

final as (
    select
        fields.as_of_date,
        fields.as_of_at,
        fields.customer_id,
        fields.shopify_customer_id,
        fields.klaviyo_profile_id,
        fields.email,
        fields.first_name,
        fields.greeting_name,
        fields.has_first_name,
        fields.email_consent_state,
        fields.segment_id,
        fields.segment_name,
        fields.rfm_segment,
        fields.churn_probability,
        fields.churn_risk_band,
        fields.expected_net_sales_12m,
        fields.expected_next_order_date,
        fields.currency_code,
        coalesce(lists.recommendations, '[]') as recommendations,
        coalesce(lists.recommendation_count, 0) as recommendation_count,
        fields.send_hour_local,
        fields.send_hour_utc,
        fields.timezone,
        fields.next_best_action,
        fields.content_block,
        fields.greeting_block,
        case
            when coalesce(lists.recommendation_count, 0) > 0 then 'recommendations_personal'
            else {{ tailor.string_literal(var('feed_recommendations_fallback_block')) }}
        end as recommendations_block,
        fields.experiment_group,
        fields.experiment_salt,
        fields.scores_model_version,
        fields.recommendations_model_version,
        fields.send_times_model_version
    from fields
    left join lists
        on fields.customer_id = lists.customer_id
)

select * from final
