-- One row per Shopify product existing at as_of: its latest version at or before as_of (deleted ones dropped).
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__product_versions'), 'product_id', 'raw.shopify_products'
    ) }}
),

final as (
    select
        versions.product_id,
        versions.product_legacy_id,
        versions.product_title,
        versions.handle,
        versions.product_category,
        versions.vendor,
        versions.status,
        versions.tags,
        versions.created_at,
        versions.updated_at
    from versions
)

select * from final
