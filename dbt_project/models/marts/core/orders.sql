-- Orders as of as_of with their customer and net sales. Grain: one row per Shopify order (test orders excluded).
with

orders as (
    select * from {{ ref('int_orders_attributed') }}
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_number,
        orders.ordered_at,
        orders.is_cancelled,
        orders.cancelled_at,
        orders.gross_sales_amount,
        orders.discounts_amount,
        orders.returns_amount,
        orders.net_sales_amount,
        orders.currency_code,
        orders.is_guest,
        orders.financial_status,
        orders.fulfillment_status,
        orders.shopify_customer_id,
        orders.email_normalized,
        orders.subtotal_amount,
        orders.shipping_amount,
        orders.tax_amount,
        orders.total_amount,
        orders.refunded_amount,
        orders.current_total_amount,
        orders.updated_at
    from orders
)

select * from final
