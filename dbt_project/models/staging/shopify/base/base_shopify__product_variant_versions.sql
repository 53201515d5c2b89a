-- One row per variant of each raw Shopify product version, parsed once. Incremental, append-only, independent of
-- as_of: a run parses the variants of the product versions (base_shopify__product_versions with variant_count > 0)
-- whose variants are not here yet (macros/base.sql).
with

versions as (
    {{ tailor.raw_parent_versions_to_parse(
        source('shopify', 'products'), ref('base_shopify__product_versions'), 'product_id', 'variant_count',
        'product_version_id'
    ) }}
),

variants as (
    select
        versions.record_id as product_id,
        versions.updated_at as product_updated_at,
        versions.product_version_id,
        variant.value as variant
    from versions
    {{ tailor.json_array_join('versions.payload', ['variants'], 'variant') }}
),

final as (
    select
        {{ tailor.json_text('variants.variant', ['id']) }} as variant_id,
        variants.product_id,
        variants.product_updated_at,
        variants.product_version_id,
        {{ tailor.json_text('variants.variant', ['sku']) }} as sku,
        {{ tailor.json_text('variants.variant', ['title']) }} as variant_title,
        {{ tailor.to_money(tailor.json_text('variants.variant', ['price'])) }} as price_amount,
        cast({{ tailor.json_text('variants.variant', ['inventoryQuantity']) }} as integer) as inventory_quantity
    from variants
)

select * from final
