{#- One row per customer (every customer in `customers`): email and onsite engagement as of as_of.
    A window of N days is (as_of - N days, as_of]: an event exactly N days before as_of is outside it. -#}

{%- set email_windows = [7, 30, 90] -%}
{%- set onsite_windows = [30, 90] -%}
{%- set email_counts = {'sends': 'received', 'opens': 'opened', 'clicks': 'clicked', 'unsubscribes': 'unsubscribed'} -%}
{%- set onsite_counts = {'product_views': 'viewed_product', 'cart_adds': 'added_to_cart'} -%}

with

customers as (
    select customer_id
    from {{ ref('customers') }}
),

email_events as (
    select
        customer_id,
        event_type,
        occurred_at
    from {{ ref('email_events') }}
    where customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
        and occurred_at > {{ tailor.add_days(tailor.as_of(), -90) }}
),

engagement_events as (
    select
        customer_id,
        max(occurred_at) as last_engaged_at
    from {{ ref('email_events') }}
    where customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
        and event_type in ('opened', 'clicked', 'viewed_product', 'added_to_cart', 'started_checkout')
    group by customer_id
),

messages as (
    select
        customer_id,
        is_opened,
        is_clicked
    from {{ ref('int_customer_messages_summarized') }}
    where received_at <= {{ tailor.as_of() }}
        and received_at > {{ tailor.add_days(tailor.as_of(), -90) }}
),

send_hours as (
    select
        customer_id,
        hour_utc,
        interactions
    from {{ ref('int_customer_send_hours_ranked') }}
    where hour_rank = 1
),

abandoned_carts as (
    select
        customer_id,
        age_hours
    from {{ ref('int_abandoned_carts_identified') }}
),

event_counts as (
    select
        email_events.customer_id,
        {%- for counts, windows in [(email_counts, email_windows), (onsite_counts, onsite_windows)] %}
        {%- for name, event_type in counts.items() %}
        {%- for days in windows %}
        sum(
            case
                when email_events.event_type = '{{ event_type }}'
                    and email_events.occurred_at > {{ tailor.add_days(tailor.as_of(), -days) }} then 1
                else 0
            end
        ) as {{ name }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        {%- endfor %}
        count(*) as events_90d
    from email_events
    group by email_events.customer_id
),

message_rates as (
    select
        messages.customer_id,
        count(*) as messages_received_90d,
        sum(case when messages.is_opened then 1 else 0 end) as messages_opened_90d,
        sum(case when messages.is_clicked then 1 else 0 end) as messages_clicked_90d
    from messages
    group by messages.customer_id
),

carts as (
    select
        abandoned_carts.customer_id,
        count(*) as open_abandoned_carts,
        max(abandoned_carts.age_hours) as oldest_open_abandoned_cart_age_hours
    from abandoned_carts
    group by abandoned_carts.customer_id
),

joined as (
    select
        customers.customer_id,
        {%- for name in email_counts %}
        {%- for days in email_windows %}
        coalesce(event_counts.{{ name }}_{{ days }}d, 0) as {{ name }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        coalesce(message_rates.messages_received_90d, 0) as messages_received_90d,
        {{ tailor.safe_divide('message_rates.messages_opened_90d', 'message_rates.messages_received_90d') }}
            as open_rate_90d,
        {{ tailor.safe_divide('message_rates.messages_clicked_90d', 'message_rates.messages_received_90d') }}
            as click_rate_90d,
        engagement_events.last_engaged_at,
        send_hours.hour_utc as preferred_send_hour_utc,
        send_hours.interactions as preferred_send_hour_interactions,
        {%- for name in onsite_counts %}
        {%- for days in onsite_windows %}
        coalesce(event_counts.{{ name }}_{{ days }}d, 0) as {{ name }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        coalesce(carts.open_abandoned_carts, 0) as open_abandoned_carts,
        carts.oldest_open_abandoned_cart_age_hours
    from customers
    left join event_counts
        on customers.customer_id = event_counts.customer_id
    left join message_rates
        on customers.customer_id = message_rates.customer_id
    left join engagement_events
        on customers.customer_id = engagement_events.customer_id
    left join send_hours
        on customers.customer_id = send_hours.customer_id
    left join carts
        on customers.customer_id = carts.customer_id
),

final as (
    select
        joined.customer_id,
        {{ tailor.as_of() }} as as_of_at,
        {%- for name in email_counts %}
        {%- for days in email_windows %}
        joined.{{ name }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        joined.messages_received_90d,
        cast(joined.open_rate_90d as {{ tailor.type_double() }}) as open_rate_90d,
        cast(joined.click_rate_90d as {{ tailor.type_double() }}) as click_rate_90d,
        joined.last_engaged_at,
        {{ tailor.whole_days_between('joined.last_engaged_at', tailor.as_of()) }} as days_since_last_engaged,
        case
            when joined.last_engaged_at is null then 'never_engaged'
            when joined.last_engaged_at > {{ tailor.add_days(tailor.as_of(), -30) }}
                and (joined.clicks_30d > 0 or joined.open_rate_90d >= 0.5) then 'highly_engaged'
            when joined.last_engaged_at > {{ tailor.add_days(tailor.as_of(), -30) }} then 'engaged'
            when joined.last_engaged_at > {{ tailor.add_days(tailor.as_of(), -90) }} then 'lapsing'
            else 'dormant'
        end as engagement_level,
        joined.preferred_send_hour_utc,
        coalesce(joined.preferred_send_hour_interactions, 0) as preferred_send_hour_interactions,
        {%- for name in onsite_counts %}
        {%- for days in onsite_windows %}
        joined.{{ name }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        joined.open_abandoned_carts,
        cast(joined.oldest_open_abandoned_cart_age_hours as {{ tailor.type_double() }})
            as oldest_open_abandoned_cart_age_hours
    from joined
)

select * from final
