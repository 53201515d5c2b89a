{#- One row per customer with at least one non-cancelled order in the RFM window (as_of - rfm_window_days, as_of]:
    recency, frequency and monetary value, their 1..5 quintile scores, the named segment and Shopify's group.
    Scores rank customers against each other (tailor.quintile_score: ties share a score; see DECISIONLOG.md). -#}

with

orders as (
    select
        customer_id,
        ordered_at,
        net_sales_amount,
        currency_code
    from {{ ref('orders') }}
    where not is_cancelled
        and customer_id is not null
        and ordered_at <= {{ tailor.as_of() }}
        and ordered_at > {{ tailor.add_days(tailor.as_of(), - var('rfm_window_days')) }}
),

segments as (
    select
        r_score,
        fm_score,
        rfm_segment
    from {{ ref('rfm_segments') }}
),

shopify_groups as (
    select
        rfm_segment,
        shopify_rfm_group
    from {{ ref('rfm_segment_shopify_groups') }}
),

customer_orders as (
    select
        orders.customer_id,
        max(orders.ordered_at) as last_order_at,
        count(*) as frequency,
        sum(orders.net_sales_amount) as monetary_amount,
        max(orders.currency_code) as currency_code
    from orders
    group by orders.customer_id
),

measured as (
    select
        customer_orders.customer_id,
        customer_orders.last_order_at,
        {{ tailor.whole_days_between('customer_orders.last_order_at', tailor.as_of()) }} as recency_days,
        customer_orders.frequency,
        customer_orders.monetary_amount,
        customer_orders.currency_code
    from customer_orders
),

scored as (
    select
        measured.customer_id,
        measured.last_order_at,
        measured.recency_days,
        measured.frequency,
        measured.monetary_amount,
        measured.currency_code,
        -- recency ranks on whole days: two orders on the same day are equally recent
        {{ tailor.quintile_score('measured.recency_days', 'desc') }} as r_score,
        {{ tailor.quintile_score('measured.frequency', 'asc') }} as f_score,
        {{ tailor.quintile_score('measured.monetary_amount', 'asc') }} as m_score
    from measured
),

final as (
    select
        scored.customer_id,
        {{ tailor.as_of() }} as as_of_at,
        scored.last_order_at,
        scored.recency_days,
        cast(scored.frequency as integer) as frequency,
        {{ tailor.to_money('scored.monetary_amount') }} as monetary_amount,
        scored.currency_code,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        {{ tailor.fm_score('scored.f_score', 'scored.m_score') }} as fm_score,
        {{ dbt.concat([
            dbt.safe_cast('scored.r_score', dbt.type_string()),
            dbt.safe_cast('scored.f_score', dbt.type_string()),
            dbt.safe_cast('scored.m_score', dbt.type_string()),
        ]) }} as rfm_cell,
        segments.rfm_segment,
        shopify_groups.shopify_rfm_group
    from scored
    left join segments
        on scored.r_score = segments.r_score
            and {{ tailor.fm_score('scored.f_score', 'scored.m_score') }} = segments.fm_score
    left join shopify_groups
        on segments.rfm_segment = shopify_groups.rfm_segment
)

select * from final
