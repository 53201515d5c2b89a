-- The next best action of each customer of the feed as of as_of: the enabled action of the seed next_best_actions
-- with the lowest priority among those that apply (ties by action name; `default` always applies). What each rule
-- reads, with its threshold from the seed (DECISIONLOG.md, "The feed: next best action"):
--   abandoned_cart            a cart add within feed_abandoned_cart_window_days of as_of, at least threshold hours
--                             before as_of, with no order by the customer after it (any order closes a cart)
--   birthday                  the next birthday (year-wrap safe) in 0..threshold days from as_of's UTC date
--   win_back                  the date's churn probability >= threshold
--   post_purchase_cross_sell  a non-cancelled order in the last threshold days
--   vip                       the RFM segment is one of the '|'-separated segments
--   re_engagement             no email open or click in the last threshold days (30 when empty)
-- The signals are kept as columns, so a customer's action can be explained from the row.
{%- set as_of_date = tailor.utc_date(tailor.as_of()) %}

with

audience as (
    select
        customer_id,
        date_of_birth,
        last_order_at
    from {{ ref('int_feed_customers_consented') }}
),

scores as (
    select
        customer_id,
        churn_probability
    from {{ ref('stg_ml__customer_scores') }}
    where as_of_date = {{ as_of_date }}
),

rfm as (
    select
        customer_id,
        rfm_segment
    from {{ ref('customer_rfm') }}
),

-- any order closes a cart, cancelled or not: the customer went through checkout
last_orders as (
    select
        customer_id,
        max(ordered_at) as last_any_order_at
    from {{ ref('orders') }}
    where customer_id is not null
        and ordered_at <= {{ tailor.as_of() }}
    group by customer_id
),

cart_adds as (
    select
        customer_id,
        occurred_at as added_at
    from {{ ref('email_events') }}
    where event_type = 'added_to_cart'
        and customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
        and occurred_at > {{ tailor.add_days(tailor.as_of(), - var('feed_abandoned_cart_window_days')) }}
),

-- the oldest cart add in the window after the customer's last order: the cart open the longest
open_carts as (
    select
        cart_adds.customer_id,
        min(cart_adds.added_at) as oldest_open_cart_added_at
    from cart_adds
    left join last_orders
        on cart_adds.customer_id = last_orders.customer_id
    where last_orders.last_any_order_at is null
        or cart_adds.added_at > last_orders.last_any_order_at
    group by cart_adds.customer_id
),

-- a click counts as an open (an image-blocking client opens without the pixel)
email_opens as (
    select
        customer_id,
        max(occurred_at) as last_email_open_at
    from {{ ref('email_events') }}
    where event_type in ('opened', 'clicked')
        and customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
    group by customer_id
),

signals as (
    select
        audience.customer_id,
        cast(
            {{ tailor.hours_between('open_carts.oldest_open_cart_added_at', tailor.as_of()) }}
            as {{ tailor.type_double() }}
        ) as open_cart_age_hours,
        {{ tailor.days_until_birthday('audience.date_of_birth', as_of_date) }} as days_until_birthday,
        scores.churn_probability,
        cast(
            {{ tailor.days_between('audience.last_order_at', tailor.as_of()) }} as {{ tailor.type_double() }}
        ) as days_since_last_order,
        rfm.rfm_segment,
        cast(
            {{ tailor.days_between('email_opens.last_email_open_at', tailor.as_of()) }} as {{ tailor.type_double() }}
        ) as days_since_last_email_open
    from audience
    left join open_carts
        on audience.customer_id = open_carts.customer_id
    left join scores
        on audience.customer_id = scores.customer_id
    left join rfm
        on audience.customer_id = rfm.customer_id
    left join email_opens
        on audience.customer_id = email_opens.customer_id
),

actions as (
    select
        action,
        priority,
        content_block,
        threshold,
        segments
    from {{ ref('next_best_actions') }}
    where is_enabled
),

applicable as (
    select
        signals.customer_id,
        actions.action,
        actions.priority,
        actions.content_block,
        row_number() over (
            partition by signals.customer_id
            order by actions.priority asc, actions.action asc
        ) as action_rank
    from signals
    cross join actions
    where
        case actions.action
            when 'abandoned_cart' then signals.open_cart_age_hours >= actions.threshold
            when 'birthday' then signals.days_until_birthday <= actions.threshold
            when 'win_back' then signals.churn_probability >= actions.threshold
            when 'post_purchase_cross_sell' then signals.days_since_last_order < actions.threshold
            when 'vip' then '|' || actions.segments || '|' like '%|' || signals.rfm_segment || '|%'
            when 're_engagement'
                then
                    signals.days_since_last_email_open is null
                    or signals.days_since_last_email_open >= coalesce(actions.threshold, 30)
            when 'default' then true
            else false
        end
),

final as (
    select
        signals.customer_id,
        applicable.action as next_best_action,
        applicable.content_block,
        applicable.priority as action_priority,
        signals.open_cart_age_hours,
        signals.days_until_birthday,
        signals.churn_probability,
        signals.days_since_last_order,
        signals.rfm_segment,
        signals.days_since_last_email_open
    from signals
    left join applicable
        on
            signals.customer_id = applicable.customer_id
            and applicable.action_rank = 1
)

select * from final
