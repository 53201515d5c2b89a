{#- One row per (customer, UTC hour of day) with the customer's email opens and clicks in that hour, over all
    history at or before as_of, ranked per customer: most interactions first, ties to the earlier hour (0..23), so
    the pick is deterministic on every database. Rank 1 is the customer's preferred send hour. -#}

with

email_events as (
    select
        customer_id,
        occurred_hour_utc,
        occurred_at
    from {{ ref('email_events') }}
    where event_type in ('opened', 'clicked')
        and customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
),

hours as (
    select
        email_events.customer_id,
        email_events.occurred_hour_utc as hour_utc,
        count(*) as interactions,
        max(email_events.occurred_at) as last_interaction_at
    from email_events
    group by email_events.customer_id, email_events.occurred_hour_utc
),

final as (
    select
        hours.customer_id,
        hours.hour_utc,
        hours.interactions,
        hours.last_interaction_at,
        row_number() over (
            partition by hours.customer_id
            order by hours.interactions desc, hours.hour_utc asc
        ) as hour_rank
    from hours
)

select * from final
