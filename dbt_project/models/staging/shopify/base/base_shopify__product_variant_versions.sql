-- One row per variant of each raw Shopify product version, parsed once. Incremental, append-only, independent of
-- as_of: a run parses the variants of the product versions (base_shopify__product_versions with variant_count > 0)
-- whose variants are not here yet (macros/base.sql).
{% set variant_paths = {
    'variant_id': ['id'],
    'sku': ['sku'],
    'variant_title': ['title'],
    'price_text': ['price'],
    'inventory_quantity_text': ['inventoryQuantity'],
} -%}

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
        {{ tailor.json_array_rows('versions.payload', ['variants'], variant_paths) }} as variant
    from versions
),

variant_fields as (
    select
        variants.product_id,
        variants.product_updated_at,
        variants.product_version_id,
        {{ tailor.json_row_texts('variants.variant', variant_paths) }}
    from variants
),

final as (
    select
        variant_fields.variant_id,
        variant_fields.product_id,
        variant_fields.product_updated_at,
        variant_fields.product_version_id,
        variant_fields.sku,
        variant_fields.variant_title,
        {{ tailor.to_money('variant_fields.price_text') }} as price_amount,
        cast(variant_fields.inventory_quantity_text as integer) as inventory_quantity
    from variant_fields
)

select * from final
