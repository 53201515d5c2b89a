-- Order lines as of as_of, net of refunds and cancellations, with their order's customer and the product's
-- category. Grain: one row per line item of a non-test order.
with

lines as (
    select
        order_line_id,
        order_id,
        product_id,
        variant_id,
        sku,
        product_title,
        quantity,
        unit_price_amount,
        line_amount,
        currency_code,
        order_updated_at
    from {{ ref('stg_shopify__order_lines') }}
),

refund_lines as (
    select
        order_line_id,
        quantity,
        subtotal_amount
    from {{ ref('stg_shopify__refund_lines') }}
),

orders as (
    select
        order_id,
        customer_id,
        ordered_at,
        is_cancelled
    from {{ ref('int_orders_attributed') }}
),

products as (
    select
        product_id,
        product_category
    from {{ ref('stg_shopify__products') }}
),

refunds_per_line as (
    select
        refund_lines.order_line_id,
        cast(sum(refund_lines.quantity) as integer) as refunded_quantity,
        cast(sum(refund_lines.subtotal_amount) as numeric(18, 2)) as refunded_amount
    from refund_lines
    group by refund_lines.order_line_id
),

final as (
    select
        lines.order_line_id,
        lines.order_id,
        orders.customer_id,
        lines.product_id,
        lines.variant_id,
        products.product_category,
        orders.ordered_at,
        lines.quantity,
        coalesce(refunds_per_line.refunded_quantity, 0) as refunded_quantity,
        cast(case
            when orders.is_cancelled then 0
            else lines.quantity - coalesce(refunds_per_line.refunded_quantity, 0)
        end as integer) as net_quantity,
        case
            when orders.is_cancelled then cast(0 as numeric(18, 2))
            else cast(lines.line_amount - coalesce(refunds_per_line.refunded_amount, 0) as numeric(18, 2))
        end as net_line_amount,
        orders.is_cancelled,
        lines.currency_code,
        lines.sku,
        lines.product_title,
        lines.unit_price_amount,
        lines.line_amount as gross_line_amount,
        coalesce(refunds_per_line.refunded_amount, cast(0 as numeric(18, 2))) as refunded_amount,
        lines.order_updated_at
    from lines
    inner join orders
        on lines.order_id = orders.order_id
    left join refunds_per_line
        on lines.order_line_id = refunds_per_line.order_line_id
    left join products
        on lines.product_id = products.product_id
)

select * from final
