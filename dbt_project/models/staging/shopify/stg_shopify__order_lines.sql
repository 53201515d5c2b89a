-- One row per line item of the Shopify orders existing at as_of (each order at its as-of version).
with

order_versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__order_versions'), 'order_id', 'raw.shopify_orders', 'processed_at'
    ) }}
),

line_versions as (
    select
        order_line_id,
        order_id,
        order_updated_at,
        order_version_id,
        product_id,
        variant_id,
        sku,
        product_title,
        variant_title,
        vendor,
        quantity,
        original_unit_price_amount,
        unit_price_amount,
        discount_amount,
        line_amount,
        currency_code
    from {{ ref('base_shopify__order_line_versions') }}
),

final as (
    select
        line_versions.order_line_id,
        line_versions.order_id,
        line_versions.product_id,
        line_versions.variant_id,
        line_versions.sku,
        line_versions.product_title,
        line_versions.variant_title,
        line_versions.vendor,
        line_versions.quantity,
        line_versions.original_unit_price_amount,
        line_versions.unit_price_amount,
        line_versions.discount_amount,
        line_versions.line_amount,
        line_versions.currency_code,
        {{ tailor.state_updated_at('order_versions') }} as order_updated_at
    from line_versions
    inner join order_versions
        on line_versions.order_version_id = order_versions.order_version_id
)

select * from final
