-- The feed's fields as of as_of but its product lists: one row per customer of the feed (consented,
-- int_feed_customers_consented) scored for as_of's date, with the scores, RFM segment, send hour, next best action,
-- greeting and experiment group (the served model version's for the date, stg_ml__scoring_runs). esp_feed adds the
-- lists. A table, unlike the other intermediate steps: as a view, its six-way join and the lists' JSON (1.5 GB at a
-- million customers) would be planned together, and DuckDB built a hash table on the side holding the JSON (the
-- feed needed over 3.5 GB); materialized, esp_feed is one two-way join that fits in 2.5 GB. DECISIONLOG.md.
{{ config(materialized='table') }}
{%- set as_of_date = tailor.utc_date(tailor.as_of()) %}

with

audience as (
    select
        customer_id,
        email,
        first_name,
        greeting_name,
        has_first_name,
        email_consent_state,
        shopify_customer_id,
        klaviyo_profile_id,
        currency_code,
        experiment_group,
        experiment_salt
    from {{ ref('int_feed_customers_consented') }}
),

scores as (
    select
        customer_id,
        segment_id,
        segment_name,
        churn_probability,
        expected_net_sales_12m,
        expected_next_order_date
    from {{ ref('stg_ml__customer_scores') }}
    where as_of_date = {{ as_of_date }}
),

send_times as (
    select
        customer_id,
        send_hour_local,
        send_hour_utc,
        timezone
    from {{ ref('stg_ml__customer_send_times') }}
    where as_of_date = {{ as_of_date }}
),

rfm as (
    select
        customer_id,
        rfm_segment
    from {{ ref('customer_rfm') }}
),

actions as (
    select
        customer_id,
        next_best_action,
        content_block
    from {{ ref('int_feed_next_best_actions') }}
),

-- the served model version of each table for the date (null when the table was not scored for it)
versions as (
    select
        max(case when table_name = 'ml.customer_scores' then model_version end) as scores_model_version,
        max(case when table_name = 'ml.customer_recommendations' then model_version end)
            as recommendations_model_version,
        max(case when table_name = 'ml.customer_send_times' then model_version end) as send_times_model_version
    from {{ ref('stg_ml__scoring_runs') }}
    where is_served
        and as_of_date = {{ as_of_date }}
),

final as (
    select
        {{ as_of_date }} as as_of_date,
        {{ tailor.as_of() }} as as_of_at,
        audience.customer_id,
        audience.shopify_customer_id,
        audience.klaviyo_profile_id,
        audience.email,
        audience.first_name,
        audience.greeting_name,
        audience.has_first_name,
        audience.email_consent_state,
        scores.segment_id,
        scores.segment_name,
        rfm.rfm_segment,
        scores.churn_probability,
        case
            when scores.churn_probability is null then 'not_a_buyer'
            when scores.churn_probability >= {{ var('feed_churn_high_threshold') }} then 'high'
            when scores.churn_probability >= {{ var('feed_churn_medium_threshold') }} then 'medium'
            else 'low'
        end as churn_risk_band,
        scores.expected_net_sales_12m,
        scores.expected_next_order_date,
        audience.currency_code,
        send_times.send_hour_local,
        send_times.send_hour_utc,
        send_times.timezone,
        actions.next_best_action,
        actions.content_block,
        case
            when audience.has_first_name then 'greeting_named'
            else {{ tailor.string_literal(var('feed_greeting_fallback_block')) }}
        end as greeting_block,
        audience.experiment_group,
        audience.experiment_salt,
        versions.scores_model_version,
        versions.recommendations_model_version,
        versions.send_times_model_version
    from audience
    inner join scores
        on audience.customer_id = scores.customer_id
    left join send_times
        on audience.customer_id = send_times.customer_id
    left join rfm
        on audience.customer_id = rfm.customer_id
    left join actions
        on audience.customer_id = actions.customer_id
    cross join versions
)

select * from final
