{#- One row per (customer, email message) the customer received, with when they first opened and clicked it
    (at or before as_of). The base of open and click rates: a rate counts messages, not events, so repeated opens of
    one email count once. A message is identified by Klaviyo's $message id (campaign name when it is missing). -#}

with

email_events as (

    select
        customer_id,
        event_type,
        occurred_at,
        coalesce(message_id, campaign_name) as message_key
    from {{ ref('email_events') }}
    where event_type in ('received', 'opened', 'clicked')
        and customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}

),

summarized as (

    select
        customer_id,
        message_key,
        min(case when event_type = 'received' then occurred_at end) as received_at,
        min(case when event_type = 'opened' then occurred_at end) as first_opened_at,
        min(case when event_type = 'clicked' then occurred_at end) as first_clicked_at
    from email_events
    where message_key is not null
    group by customer_id, message_key

),

final as (

    select
        customer_id,
        message_key,
        received_at,
        first_opened_at,
        first_clicked_at,
        -- a click implies the email was opened even when the open pixel did not fire
        first_opened_at is not null or first_clicked_at is not null as is_opened,
        first_clicked_at is not null as is_clicked
    from summarized
    where received_at is not null

)

select * from final
