{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ tailor.delete_as_of_partition('as_of_date') }}",
    )
}}

{#- One row per (customer, as_of_date): everything the ML models use about a customer, computed strictly from data
    at or before as_of. Incremental by date: a run replaces its own as_of_date partition (pre-hook) and keeps the
    others, so the table accumulates one snapshot per day for training; a backfill for a past date rewrites that
    date only. A full refresh rebuilds the current date alone (older dates come back by backfilling them).
    Windows of N days are (as_of - N days, as_of]; the prior 90 days are (as_of - 180 days, as_of - 90 days]. -#}

with

customers as (
    select
        customer_id,
        customer_created_at,
        first_order_at,
        email_consent_state,
        is_email_marketable
    from {{ ref('customers') }}
),

orders as (
    select
        customer_id,
        ordered_at,
        gross_sales_amount,
        discounts_amount,
        returns_amount,
        net_sales_amount
    from {{ ref('orders') }}
    where not is_cancelled
        and customer_id is not null
        and ordered_at <= {{ tailor.as_of() }}
),

rfm as (
    select
        customer_id,
        recency_days,
        frequency,
        monetary_amount,
        r_score,
        f_score,
        m_score,
        rfm_segment
    from {{ ref('customer_rfm') }}
),

engagement as (
    select
        customer_id,
        sends_30d,
        sends_90d,
        opens_30d,
        opens_90d,
        clicks_30d,
        clicks_90d,
        unsubscribes_90d,
        open_rate_90d,
        click_rate_90d,
        days_since_last_engaged,
        engagement_level,
        preferred_send_hour_utc,
        product_views_30d,
        product_views_90d,
        cart_adds_30d,
        cart_adds_90d,
        open_abandoned_carts
    from {{ ref('customer_engagement') }}
),

affinity as (
    select
        customer_id,
        product_category,
        affinity_score,
        affinity_share,
        category_rank,
        purchased_lines
    from {{ ref('customer_product_affinity') }}
),

order_gaps as (
    select
        orders.customer_id,
        -- decimals, so the aggregates below do not depend on the order rows are added in
        cast({{ tailor.days_between(
            'lag(orders.ordered_at) over (partition by orders.customer_id order by orders.ordered_at)',
            'orders.ordered_at'
        ) }} as numeric(18, 6)) as days_since_previous_order
    from orders
),

intervals as (
    select
        order_gaps.customer_id,
        round(avg(order_gaps.days_since_previous_order), 6) as inter_purchase_days_mean,
        round(stddev_samp(order_gaps.days_since_previous_order), 6) as inter_purchase_days_stddev
    from order_gaps
    where order_gaps.days_since_previous_order is not null
    group by order_gaps.customer_id
),

order_stats as (
    select
        orders.customer_id,
        count(*) as order_count,
        sum(orders.net_sales_amount) as net_sales_amount,
        sum(orders.gross_sales_amount) as gross_sales_amount,
        sum(orders.discounts_amount) as discounts_amount,
        sum(orders.returns_amount) as returns_amount,
        min(orders.ordered_at) as first_order_at,
        max(orders.ordered_at) as last_order_at,
        {%- for days in [30, 90, 365] %}
        sum(
            case when orders.ordered_at > {{ tailor.add_days(tailor.as_of(), -days) }} then 1 else 0 end
        ) as orders_{{ days }}d,
        sum(
            case
                when orders.ordered_at > {{ tailor.add_days(tailor.as_of(), -days) }} then orders.net_sales_amount
                else 0
            end
        ) as revenue_{{ days }}d,
        {%- endfor %}
        sum(
            case
                when orders.ordered_at > {{ tailor.add_days(tailor.as_of(), -180) }}
                    and orders.ordered_at <= {{ tailor.add_days(tailor.as_of(), -90) }} then 1
                else 0
            end
        ) as orders_prior_90d,
        sum(
            case
                when orders.ordered_at > {{ tailor.add_days(tailor.as_of(), -180) }}
                    and orders.ordered_at <= {{ tailor.add_days(tailor.as_of(), -90) }} then orders.net_sales_amount
                else 0
            end
        ) as revenue_prior_90d
    from orders
    group by orders.customer_id
),

top_category as (
    select
        affinity.customer_id,
        affinity.product_category as top_category,
        affinity.affinity_score as top_category_score,
        affinity.affinity_share as top_category_share
    from affinity
    where affinity.category_rank = 1
),

category_counts as (
    select
        affinity.customer_id,
        count(*) as categories_interacted,
        sum(case when affinity.purchased_lines > 0 then 1 else 0 end) as categories_purchased
    from affinity
    group by affinity.customer_id
),

final as (
    select
        customers.customer_id,
        {{ tailor.utc_date(tailor.as_of()) }} as as_of_date,
        {{ tailor.as_of() }} as as_of_at,
        -- tenure and lifetime orders
        {{ tailor.whole_days_between(
            'coalesce(customers.customer_created_at, order_stats.first_order_at)', tailor.as_of()
        ) }} as tenure_days,
        cast(coalesce(order_stats.order_count, 0) as integer) as order_count,
        {{ tailor.to_money('coalesce(order_stats.net_sales_amount, 0)') }} as net_sales_amount,
        {{ tailor.to_money(tailor.safe_divide('order_stats.net_sales_amount', 'order_stats.order_count')) }}
            as avg_order_value_amount,
        cast(
            {{ tailor.safe_divide('order_stats.discounts_amount', 'order_stats.gross_sales_amount') }}
            as {{ tailor.type_double() }}
        ) as discount_rate,
        cast(
            {{ tailor.safe_divide('order_stats.returns_amount', 'order_stats.gross_sales_amount') }}
            as {{ tailor.type_double() }}
        ) as return_rate,
        {{ tailor.whole_days_between('order_stats.first_order_at', tailor.as_of()) }} as days_since_first_order,
        {{ tailor.whole_days_between('order_stats.last_order_at', tailor.as_of()) }} as days_since_last_order,
        cast(intervals.inter_purchase_days_mean as {{ tailor.type_double() }}) as inter_purchase_days_mean,
        cast(intervals.inter_purchase_days_stddev as {{ tailor.type_double() }}) as inter_purchase_days_stddev,
        -- windows and trend
        {%- for days in [30, 90, 365] %}
        cast(coalesce(order_stats.orders_{{ days }}d, 0) as integer) as orders_{{ days }}d,
        {{ tailor.to_money('coalesce(order_stats.revenue_' ~ days ~ 'd, 0)') }} as revenue_{{ days }}d,
        {%- endfor %}
        cast(coalesce(order_stats.orders_prior_90d, 0) as integer) as orders_prior_90d,
        {{ tailor.to_money('coalesce(order_stats.revenue_prior_90d, 0)') }} as revenue_prior_90d,
        cast(coalesce(order_stats.orders_90d, 0) - coalesce(order_stats.orders_prior_90d, 0) as integer)
            as orders_trend_90d,
        {{ tailor.to_money('coalesce(order_stats.revenue_90d, 0) - coalesce(order_stats.revenue_prior_90d, 0)') }}
            as revenue_trend_90d,
        -- RFM over the rfm_window_days window (null without an order in it)
        rfm.recency_days,
        cast(coalesce(rfm.frequency, 0) as integer) as rfm_frequency,
        {{ tailor.to_money('coalesce(rfm.monetary_amount, 0)') }} as rfm_monetary_amount,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_segment,
        -- email and onsite engagement
        customers.email_consent_state,
        customers.is_email_marketable,
        coalesce(engagement.sends_30d, 0) as sends_30d,
        coalesce(engagement.sends_90d, 0) as sends_90d,
        coalesce(engagement.opens_30d, 0) as opens_30d,
        coalesce(engagement.opens_90d, 0) as opens_90d,
        coalesce(engagement.clicks_30d, 0) as clicks_30d,
        coalesce(engagement.clicks_90d, 0) as clicks_90d,
        coalesce(engagement.unsubscribes_90d, 0) as unsubscribes_90d,
        engagement.open_rate_90d,
        engagement.click_rate_90d,
        engagement.days_since_last_engaged,
        coalesce(engagement.engagement_level, 'never_engaged') as engagement_level,
        engagement.preferred_send_hour_utc,
        coalesce(engagement.product_views_30d, 0) as product_views_30d,
        coalesce(engagement.product_views_90d, 0) as product_views_90d,
        coalesce(engagement.cart_adds_30d, 0) as cart_adds_30d,
        coalesce(engagement.cart_adds_90d, 0) as cart_adds_90d,
        coalesce(engagement.open_abandoned_carts, 0) as open_abandoned_carts,
        -- category affinity
        top_category.top_category,
        cast(top_category.top_category_score as {{ tailor.type_double() }}) as top_category_score,
        cast(top_category.top_category_share as {{ tailor.type_double() }}) as top_category_share,
        cast(coalesce(category_counts.categories_interacted, 0) as integer) as categories_interacted,
        cast(coalesce(category_counts.categories_purchased, 0) as integer) as categories_purchased
    from customers
    left join order_stats
        on customers.customer_id = order_stats.customer_id
    left join intervals
        on customers.customer_id = intervals.customer_id
    left join rfm
        on customers.customer_id = rfm.customer_id
    left join engagement
        on customers.customer_id = engagement.customer_id
    left join top_category
        on customers.customer_id = top_category.customer_id
    left join category_counts
        on customers.customer_id = category_counts.customer_id
)

select * from final
