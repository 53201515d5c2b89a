-- One row per raw Shopify order version (deletions included), its payload parsed into typed columns once, with the
-- number of line items and refund line items it nests (the order line and refund line base tables parse a version's
-- items only when it has some). Incremental, append-only, independent of as_of (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('shopify', 'orders'), 'order_id') }}
),

parsed as (
    select
        versions.record_id as order_id,
        versions.updated_at,
        {{ tailor.version_id('versions.record_id', 'versions.updated_at') }} as order_version_id,
        versions.is_deleted,
        {{ tailor.json_text('versions.payload', ['name']) }} as order_number,
        {{ tailor.json_text('versions.payload', ['customer', 'id']) }} as shopify_customer_id,
        {{ tailor.json_text('versions.payload', ['email']) }} as email,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['createdAt'])) }} as created_at,
        {{ tailor.to_timestamp_tz(
            "coalesce(" ~ tailor.json_text('versions.payload', ['processedAt']) ~ ", "
            ~ tailor.json_text('versions.payload', ['createdAt']) ~ ")"
        ) }} as processed_at,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['cancelledAt'])) }} as cancelled_at,
        lower({{ tailor.json_text('versions.payload', ['cancelReason']) }}) as cancel_reason,
        coalesce(cast({{ tailor.json_text('versions.payload', ['test']) }} as boolean), false) as is_test,
        lower({{ tailor.json_text('versions.payload', ['displayFinancialStatus']) }}) as financial_status,
        lower({{ tailor.json_text('versions.payload', ['displayFulfillmentStatus']) }}) as fulfillment_status,
        coalesce(
            {{ tailor.json_text('versions.payload', ['totalPriceSet', 'shopMoney', 'currencyCode']) }},
            {{ tailor.json_text('versions.payload', ['currencyCode']) }}
        ) as currency_code,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['subtotalPriceSet', 'shopMoney', 'amount'])) }}
            as subtotal_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['totalDiscountsSet', 'shopMoney', 'amount'])) }}
            as discounts_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['totalShippingPriceSet', 'shopMoney', 'amount'])) }}
            as shipping_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['totalTaxSet', 'shopMoney', 'amount'])) }}
            as tax_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['totalPriceSet', 'shopMoney', 'amount'])) }}
            as total_amount,
        coalesce(
            {{ tailor.to_money(tailor.json_text('versions.payload', ['totalRefundedSet', 'shopMoney', 'amount'])) }},
            0
        ) as refunded_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['currentTotalPriceSet', 'shopMoney', 'amount'])) }}
            as current_total_amount,
        {{ tailor.json_array_length('versions.payload', ['lineItems']) }} as line_count,
        {{ tailor.json_nested_array_length('versions.payload', ['refunds'], ['refundLineItems']) }}
            as refund_line_count,
        versions.batch_id
    from versions
),

final as (
    select
        parsed.order_id,
        parsed.updated_at,
        parsed.order_version_id,
        parsed.is_deleted,
        parsed.order_number,
        parsed.shopify_customer_id,
        parsed.email,
        {{ tailor.normalize_email('parsed.email') }} as email_normalized,
        parsed.created_at,
        parsed.processed_at,
        parsed.cancelled_at,
        parsed.cancelled_at is not null as is_cancelled,
        parsed.cancel_reason,
        parsed.is_test,
        parsed.financial_status,
        parsed.fulfillment_status,
        parsed.currency_code,
        parsed.subtotal_amount,
        parsed.discounts_amount,
        parsed.shipping_amount,
        parsed.tax_amount,
        parsed.total_amount,
        parsed.refunded_amount,
        parsed.current_total_amount,
        parsed.line_count,
        parsed.refund_line_count,
        parsed.batch_id
    from parsed
)

select * from final
