-- One row per line item of each raw Shopify order version, parsed once. Incremental, append-only, independent of
-- as_of: a run parses the line items of the order versions (base_shopify__order_versions with line_count > 0) whose
-- lines are not here yet (macros/base.sql).
with

versions as (
    {{ tailor.raw_parent_versions_to_parse(
        source('shopify', 'orders'), ref('base_shopify__order_versions'), 'order_id', 'line_count',
        'order_version_id'
    ) }}
),

line_items as (
    select
        versions.record_id as order_id,
        versions.updated_at as order_updated_at,
        versions.order_version_id,
        {{ tailor.json_text('versions.payload', ['currencyCode']) }} as order_currency_code,
        line_item.value as line
    from versions
    {{ tailor.json_array_join('versions.payload', ['lineItems'], 'line_item') }}
),

final as (
    select
        {{ tailor.json_text('line_items.line', ['id']) }} as order_line_id,
        line_items.order_id,
        line_items.order_updated_at,
        line_items.order_version_id,
        {{ tailor.json_text('line_items.line', ['product', 'id']) }} as product_id,
        {{ tailor.json_text('line_items.line', ['variant', 'id']) }} as variant_id,
        {{ tailor.json_text('line_items.line', ['sku']) }} as sku,
        {{ tailor.json_text('line_items.line', ['title']) }} as product_title,
        {{ tailor.json_text('line_items.line', ['variantTitle']) }} as variant_title,
        {{ tailor.json_text('line_items.line', ['vendor']) }} as vendor,
        cast({{ tailor.json_text('line_items.line', ['quantity']) }} as integer) as quantity,
        {{ tailor.to_money(tailor.json_text('line_items.line', ['originalUnitPriceSet', 'shopMoney', 'amount'])) }}
            as original_unit_price_amount,
        {{ tailor.to_money(tailor.json_text('line_items.line', ['discountedUnitPriceSet', 'shopMoney', 'amount'])) }}
            as unit_price_amount,
        {{ tailor.to_money(tailor.json_text('line_items.line', ['totalDiscountSet', 'shopMoney', 'amount'])) }}
            as discount_amount,
        {{ tailor.to_money(tailor.json_text('line_items.line', ['discountedTotalSet', 'shopMoney', 'amount'])) }}
            as line_amount,
        coalesce(
            {{ tailor.json_text('line_items.line', ['discountedTotalSet', 'shopMoney', 'currencyCode']) }},
            line_items.order_currency_code
        ) as currency_code
    from line_items
)

select * from final
