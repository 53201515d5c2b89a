-- One row per variant of the Shopify products existing at as_of (each product at its as-of version).
with

product_versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__product_versions'), 'product_id', 'raw.shopify_products'
    ) }}
),

variant_versions as (
    select
        variant_id,
        product_id,
        product_updated_at,
        product_version_id,
        sku,
        variant_title,
        price_amount,
        inventory_quantity
    from {{ ref('base_shopify__product_variant_versions') }}
),

final as (
    select
        variant_versions.variant_id,
        variant_versions.product_id,
        variant_versions.sku,
        variant_versions.variant_title,
        variant_versions.price_amount,
        variant_versions.inventory_quantity,
        variant_versions.product_updated_at
    from variant_versions
    inner join product_versions
        on variant_versions.product_version_id = product_versions.product_version_id
)

select * from final
