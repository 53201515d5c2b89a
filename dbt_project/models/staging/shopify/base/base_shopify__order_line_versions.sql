-- One row per line item of each raw Shopify order version, parsed once. Incremental, append-only, independent of
-- as_of: a run parses the line items of the order versions (base_shopify__order_versions with line_count > 0) whose
-- lines are not here yet (macros/base.sql).
{% set line_paths = {
    'order_line_id': ['id'],
    'product_id': ['product', 'id'],
    'variant_id': ['variant', 'id'],
    'sku': ['sku'],
    'product_title': ['title'],
    'variant_title': ['variantTitle'],
    'vendor': ['vendor'],
    'quantity_text': ['quantity'],
    'original_unit_price_text': ['originalUnitPriceSet', 'shopMoney', 'amount'],
    'unit_price_text': ['discountedUnitPriceSet', 'shopMoney', 'amount'],
    'discount_text': ['totalDiscountSet', 'shopMoney', 'amount'],
    'line_amount_text': ['discountedTotalSet', 'shopMoney', 'amount'],
    'line_currency_code': ['discountedTotalSet', 'shopMoney', 'currencyCode'],
} -%}

with

versions as (
    {{ tailor.raw_parent_versions_to_parse(
        source('shopify', 'orders'), ref('base_shopify__order_versions'), 'order_id', 'line_count',
        'order_version_id'
    ) }}
),

order_versions as (
    select
        versions.record_id as order_id,
        versions.updated_at as order_updated_at,
        versions.order_version_id,
        -- per order, before the lines multiply the rows
        {{ tailor.json_text('versions.payload', ['currencyCode']) }} as order_currency_code,
        versions.payload
    from versions
),

line_items as (
    select
        order_versions.order_id,
        order_versions.order_updated_at,
        order_versions.order_version_id,
        order_versions.order_currency_code,
        -- each order's document parsed once into its lines' fields: the cost stays linear in lines per order
        {{ tailor.json_array_rows('order_versions.payload', ['lineItems'], line_paths) }} as line
    from order_versions
),

line_fields as (
    select
        line_items.order_id,
        line_items.order_updated_at,
        line_items.order_version_id,
        line_items.order_currency_code,
        {{ tailor.json_row_texts('line_items.line', line_paths) }}
    from line_items
),

final as (
    select
        line_fields.order_line_id,
        line_fields.order_id,
        line_fields.order_updated_at,
        line_fields.order_version_id,
        line_fields.product_id,
        line_fields.variant_id,
        line_fields.sku,
        line_fields.product_title,
        line_fields.variant_title,
        line_fields.vendor,
        cast(line_fields.quantity_text as integer) as quantity,
        {{ tailor.to_money('line_fields.original_unit_price_text') }} as original_unit_price_amount,
        {{ tailor.to_money('line_fields.unit_price_text') }} as unit_price_amount,
        {{ tailor.to_money('line_fields.discount_text') }} as discount_amount,
        {{ tailor.to_money('line_fields.line_amount_text') }} as line_amount,
        coalesce(line_fields.line_currency_code, line_fields.order_currency_code) as currency_code
    from line_fields
)

select * from final
