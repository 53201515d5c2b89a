-- The send-time model's hours (ml.customer_send_times) of the served model version per as-of date: one row per
-- (customer_id, as_of_date). Served = the version of the date's latest scoring run of ml.customer_send_times
-- (stg_ml__scoring_runs).
with

send_times as (
    select * from {{ source('ml', 'customer_send_times') }}
),

served as (
    select
        as_of_date,
        model_version
    from {{ ref('stg_ml__scoring_runs') }}
    where is_served and table_name = 'ml.customer_send_times'
),

final as (
    select
        send_times.customer_id,
        send_times.as_of_date,
        send_times.model_version,
        send_times.send_hour_local,
        send_times.send_hour_utc,
        send_times.timezone,
        send_times.timezone_known,
        send_times.confidence,
        send_times.engagements
    from send_times
    inner join served
        on
            send_times.as_of_date = served.as_of_date
            and send_times.model_version = served.model_version
)

select * from final
