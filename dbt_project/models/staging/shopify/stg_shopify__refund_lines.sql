-- One row per refund line item of the Shopify orders existing at as_of (each order at its as-of version).
with

order_versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__order_versions'), 'order_id', 'raw.shopify_orders', 'processed_at'
    ) }}
),

refund_line_versions as (
    select
        refund_line_id,
        refund_id,
        order_id,
        order_updated_at,
        order_version_id,
        order_line_id,
        refunded_at,
        quantity,
        subtotal_amount,
        tax_amount
    from {{ ref('base_shopify__refund_line_versions') }}
),

final as (
    select
        refund_line_versions.refund_line_id,
        refund_line_versions.refund_id,
        refund_line_versions.order_id,
        refund_line_versions.order_line_id,
        refund_line_versions.refunded_at,
        refund_line_versions.quantity,
        refund_line_versions.subtotal_amount,
        refund_line_versions.tax_amount,
        {{ tailor.state_updated_at('order_versions') }} as order_updated_at
    from refund_line_versions
    inner join order_versions
        on refund_line_versions.order_version_id = order_versions.order_version_id
    -- an order version later than as_of (reduced to it) lists refunds made after as_of too
    where refund_line_versions.refunded_at <= {{ tailor.as_of() }}
)

select * from final
