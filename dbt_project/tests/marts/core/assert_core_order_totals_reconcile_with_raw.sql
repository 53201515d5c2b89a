-- The marts' order figures equal raw Shopify orders as of as_of to the cent, read straight from raw.* by the
-- two-time rule (macros/as_of.sql): per order, returns (refund line subtotals) and money refunded count only refunds
-- made by as_of, an order is cancelled only when cancelled by as_of, and net sales = subtotal after discounts -
-- returns (0 when cancelled); the orders mart has exactly the raw non-test orders placed by as_of, every order has
-- a customer, and customers.net_sales_amount / order_count add up to the orders mart.
{% set order_paths = {
    'refunds_text': ['refunds'],
    'subtotal_text': ['subtotalPriceSet', 'shopMoney', 'amount'],
    'total_text': ['totalPriceSet', 'shopMoney', 'amount'],
    'cancelled_at_text': ['cancelledAt'],
    'is_test_text': ['test'],
} -%}

with

-- Each order document is parsed once: its fields are read in one call, the refunds as the text of their array, which
-- is parsed again alone (one call per field parsed every multi-kilobyte payload five times: 4x the time). Only the
-- refunds of each order are kept, not its whole document: raw_orders is read three times, and holding the payloads
-- (line items and all) made DuckDB spill them, 234 s of a build at a million customers.
raw_order_texts as (
    select
        versions.record_id as order_id,
        {{ tailor.json_texts('versions.payload', order_paths) }} as payload_texts
    from ({{ tailor.raw_state_as_of(
        source('shopify', 'orders'),
        'coalesce(' ~ tailor.json_text('versions.payload', ['processedAt']) ~ ', '
        ~ tailor.json_text('versions.payload', ['createdAt']) ~ ')'
    ) }}) as versions
),

raw_order_fields as (
    select
        raw_order_texts.order_id,
        {{ tailor.json_texts_columns('raw_order_texts.payload_texts', order_paths) }}
    from raw_order_texts
),

raw_orders as (
    select
        raw_order_fields.order_id,
        {{ tailor.json_parse('raw_order_fields.refunds_text') }} as refunds,
        {{ tailor.to_money('raw_order_fields.subtotal_text') }} as subtotal_amount,
        {{ tailor.to_money('raw_order_fields.total_text') }} as total_amount,
        coalesce(
            {{ tailor.to_timestamp_tz('raw_order_fields.cancelled_at_text') }} <= {{ tailor.as_of() }}, false
        ) as is_cancelled
    from raw_order_fields
    where coalesce(cast(raw_order_fields.is_test_text as boolean), false) = false
),

raw_refunds as (
    select
        raw_orders.order_id,
        refund.value as refund
    from raw_orders
    {{ tailor.json_array_join('raw_orders.refunds', [], 'refund') }}
    where {{ tailor.to_timestamp_tz(tailor.json_text('refund.value', ['createdAt'])) }} <= {{ tailor.as_of() }}
),

refunded as (
    select
        raw_refunds.order_id,
        sum({{ tailor.to_money(tailor.json_text('raw_refunds.refund', ['totalRefundedSet', 'shopMoney', 'amount'])) }})
            as refunded_amount
    from raw_refunds
    group by raw_refunds.order_id
),

returned as (
    select
        raw_refunds.order_id,
        sum({{ tailor.to_money(tailor.json_text('refund_line.value', ['subtotalSet', 'shopMoney', 'amount'])) }})
            as returns_amount
    from raw_refunds
    {{ tailor.json_array_join('raw_refunds.refund', ['refundLineItems'], 'refund_line') }}
    group by raw_refunds.order_id
),

raw_net as (
    select
        raw_orders.order_id,
        coalesce(refunded.refunded_amount, 0) as refunded_amount,
        coalesce(returned.returns_amount, 0) as returns_amount,
        case
            when raw_orders.is_cancelled then 0
            else raw_orders.subtotal_amount - coalesce(returned.returns_amount, 0)
        end as net_sales_amount,
        case
            when raw_orders.is_cancelled then 0
            else raw_orders.total_amount - coalesce(refunded.refunded_amount, 0)
        end as current_total_amount
    from raw_orders
    left join refunded
        on raw_orders.order_id = refunded.order_id
    left join returned
        on raw_orders.order_id = returned.order_id
),

mart_orders as (
    select
        order_id,
        customer_id,
        refunded_amount,
        returns_amount,
        net_sales_amount,
        current_total_amount,
        is_cancelled
    from {{ ref('orders') }}
),

per_order as (
    select
        coalesce(raw_net.order_id, mart_orders.order_id) as check_key,
        'order' as check_name,
        raw_net.net_sales_amount as expected_amount,
        mart_orders.net_sales_amount as actual_amount
    from raw_net
    full outer join mart_orders
        on raw_net.order_id = mart_orders.order_id
    where
        raw_net.order_id is null
        or mart_orders.order_id is null
        or mart_orders.customer_id is null
        or raw_net.refunded_amount <> mart_orders.refunded_amount
        or raw_net.returns_amount <> mart_orders.returns_amount
        or raw_net.net_sales_amount <> mart_orders.net_sales_amount
        or raw_net.current_total_amount <> mart_orders.current_total_amount
),

totals as (
    select
        'all' as check_key,
        'customers net sales = orders net sales' as check_name,
        (select sum(raw_net.net_sales_amount) from raw_net) as expected_amount,
        (select sum(customers.net_sales_amount) from {{ ref('customers') }} as customers) as actual_amount

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
