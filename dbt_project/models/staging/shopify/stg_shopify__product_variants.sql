-- One row per variant of the Shopify products existing at as_of (each product at its as-of version). A product
-- version later than as_of (reduced to it) gives its variants' names, not their price or stock then (unknown: null).
with

product_versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__product_versions'), 'product_id', 'raw.shopify_products', 'created_at'
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
        case when not product_versions.is_after_as_of then variant_versions.price_amount end as price_amount,
        case when not product_versions.is_after_as_of then variant_versions.inventory_quantity end
            as inventory_quantity,
        {{ tailor.state_updated_at('product_versions') }} as product_updated_at
    from variant_versions
    inner join product_versions
        on variant_versions.product_version_id = product_versions.product_version_id
)

select * from final
