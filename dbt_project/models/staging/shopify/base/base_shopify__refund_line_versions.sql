-- One row per refund line item of each raw Shopify order version, parsed once. Incremental, append-only,
-- independent of as_of: a run parses the refunds of the order versions (base_shopify__order_versions with
-- refund_line_count > 0) whose refund lines are not here yet (macros/base.sql).
with

versions as (
    {{ tailor.raw_parent_versions_to_parse(
        source('shopify', 'orders'), ref('base_shopify__order_versions'), 'order_id', 'refund_line_count',
        'order_version_id'
    ) }}
),

refunds as (
    select
        versions.record_id as order_id,
        versions.updated_at as order_updated_at,
        versions.order_version_id,
        refund.value as refund
    from versions
    {{ tailor.json_array_join('versions.payload', ['refunds'], 'refund') }}
),

refund_line_items as (
    select
        refunds.order_id,
        refunds.order_updated_at,
        refunds.order_version_id,
        {{ tailor.json_text('refunds.refund', ['id']) }} as refund_id,
        {{ tailor.to_timestamp_tz(tailor.json_text('refunds.refund', ['createdAt'])) }} as refunded_at,
        refund_line_item.value as refund_line
    from refunds
    {{ tailor.json_array_join('refunds.refund', ['refundLineItems'], 'refund_line_item') }}
),

final as (
    select
        {{ tailor.json_text('refund_line_items.refund_line', ['id']) }} as refund_line_id,
        refund_line_items.refund_id,
        refund_line_items.order_id,
        refund_line_items.order_updated_at,
        refund_line_items.order_version_id,
        {{ tailor.json_text('refund_line_items.refund_line', ['lineItem', 'id']) }} as order_line_id,
        refund_line_items.refunded_at,
        cast({{ tailor.json_text('refund_line_items.refund_line', ['quantity']) }} as integer) as quantity,
        {{ tailor.to_money(tailor.json_text('refund_line_items.refund_line', ['subtotalSet', 'shopMoney', 'amount'])) }}
            as subtotal_amount,
        {{ tailor.to_money(tailor.json_text('refund_line_items.refund_line', ['totalTaxSet', 'shopMoney', 'amount'])) }}
            as tax_amount
    from refund_line_items
)

select * from final
