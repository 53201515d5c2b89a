-- The marts' order figures equal raw Shopify orders as of as_of to the cent: per order (gross, refunded, net =
-- total - refunded or 0 when cancelled), the orders mart has exactly the raw non-test orders, every order has a
-- customer, and customers.net_revenue_amount / order_count add up to the orders mart.
with

raw_orders as (
    select
        versions.record_id as order_id,
        cast({{ tailor.json_text('versions.payload', ['totalPriceSet', 'shopMoney', 'amount']) }} as numeric(18, 2))
            as gross_amount,
        coalesce(
            {{ tailor.to_money(tailor.json_text('versions.payload', ['totalRefundedSet', 'shopMoney', 'amount'])) }},
            0
        ) as refunded_amount,
        {{ tailor.json_text('versions.payload', ['cancelledAt']) }} is not null as is_cancelled
    from ({{ tailor.latest_version_as_of(source('shopify', 'orders')) }}) as versions
    where coalesce(cast({{ tailor.json_text('versions.payload', ['test']) }} as boolean), false) = false
),

raw_net as (
    select
        raw_orders.order_id,
        raw_orders.gross_amount,
        raw_orders.refunded_amount,
        case when raw_orders.is_cancelled then 0 else raw_orders.gross_amount - raw_orders.refunded_amount end
            as net_revenue_amount
    from raw_orders
),

mart_orders as (
    select
        order_id,
        customer_id,
        gross_amount,
        refunded_amount,
        net_revenue_amount,
        is_cancelled
    from {{ ref('orders') }}
),

per_order as (
    select
        coalesce(raw_net.order_id, mart_orders.order_id) as check_key,
        'order' as check_name,
        raw_net.net_revenue_amount as expected_amount,
        mart_orders.net_revenue_amount as actual_amount
    from raw_net
    full outer join mart_orders
        on raw_net.order_id = mart_orders.order_id
    where
        raw_net.order_id is null
        or mart_orders.order_id is null
        or mart_orders.customer_id is null
        or raw_net.gross_amount <> mart_orders.gross_amount
        or raw_net.refunded_amount <> mart_orders.refunded_amount
        or raw_net.net_revenue_amount <> mart_orders.net_revenue_amount
),

totals as (
    select
        'all' as check_key,
        'customers net revenue = orders net revenue' as check_name,
        (select sum(raw_net.net_revenue_amount) from raw_net) as expected_amount,
        (select sum(customers.net_revenue_amount) from {{ ref('customers') }} as customers) as actual_amount

    union all

    select
        'all' as check_key,
        'customers order_count = non-cancelled orders' as check_name,
        (
            select count(*) from mart_orders
            where not mart_orders.is_cancelled
        ) as expected_amount,
        (select sum(customers.order_count) from {{ ref('customers') }} as customers) as actual_amount
),

final as (
    select * from per_order

    union all

    select * from totals
    where expected_amount <> actual_amount or (expected_amount is null) <> (actual_amount is null)
)

select * from final
