-- One row per raw Shopify order version (deletions included), its payload parsed into typed columns once, with the
-- number of line items, refunds and refund line items it nests (the base tables of those parse a version's items only
-- when it has some). Incremental, append-only, independent of as_of (macros/base.sql).
{% set payload_paths = {
    'order_number': ['name'],
    'shopify_customer_id': ['customer', 'id'],
    'email': ['email'],
    'created_at_text': ['createdAt'],
    'processed_at_text': ['processedAt'],
    'cancelled_at_text': ['cancelledAt'],
    'closed_at_text': ['closedAt'],
    'cancel_reason': ['cancelReason'],
    'is_test_text': ['test'],
    'financial_status': ['displayFinancialStatus'],
    'fulfillment_status': ['displayFulfillmentStatus'],
    'total_currency_code': ['totalPriceSet', 'shopMoney', 'currencyCode'],
    'currency_code': ['currencyCode'],
    'subtotal_text': ['subtotalPriceSet', 'shopMoney', 'amount'],
    'discounts_text': ['totalDiscountsSet', 'shopMoney', 'amount'],
    'shipping_text': ['totalShippingPriceSet', 'shopMoney', 'amount'],
    'tax_text': ['totalTaxSet', 'shopMoney', 'amount'],
    'total_text': ['totalPriceSet', 'shopMoney', 'amount'],
    'refunded_text': ['totalRefundedSet', 'shopMoney', 'amount'],
    'current_total_text': ['currentTotalPriceSet', 'shopMoney', 'amount'],
} -%}

with

versions as (
    {{ tailor.raw_versions_to_parse(source('shopify', 'orders'), 'order_id') }}
),

payload_fields as (
    {{ tailor.raw_version_texts('versions', payload_paths, extra={
        'line_count': tailor.json_array_length('versions.payload', ['lineItems']),
        'refund_count': tailor.json_array_length('versions.payload', ['refunds']),
        'refund_line_count': tailor.json_nested_array_length('versions.payload', ['refunds'], ['refundLineItems']),
    }) }}
),

parsed as (
    select
        payload_fields.record_id as order_id,
        payload_fields.updated_at,
        {{ tailor.version_id('payload_fields.record_id', 'payload_fields.updated_at') }} as order_version_id,
        payload_fields.is_deleted,
        payload_fields.order_number,
        payload_fields.shopify_customer_id,
        payload_fields.email,
        {{ tailor.to_timestamp_tz('payload_fields.created_at_text') }} as created_at,
        {{ tailor.to_timestamp_tz(
            'coalesce(payload_fields.processed_at_text, payload_fields.created_at_text)'
        ) }} as processed_at,
        {{ tailor.to_timestamp_tz('payload_fields.cancelled_at_text') }} as cancelled_at,
        {{ tailor.to_timestamp_tz('payload_fields.closed_at_text') }} as closed_at,
        lower(payload_fields.cancel_reason) as cancel_reason,
        coalesce(cast(payload_fields.is_test_text as boolean), false) as is_test,
        lower(payload_fields.financial_status) as financial_status,
        lower(payload_fields.fulfillment_status) as fulfillment_status,
        coalesce(payload_fields.total_currency_code, payload_fields.currency_code) as currency_code,
        {{ tailor.to_money('payload_fields.subtotal_text') }} as subtotal_amount,
        {{ tailor.to_money('payload_fields.discounts_text') }} as discounts_amount,
        {{ tailor.to_money('payload_fields.shipping_text') }} as shipping_amount,
        {{ tailor.to_money('payload_fields.tax_text') }} as tax_amount,
        {{ tailor.to_money('payload_fields.total_text') }} as total_amount,
        coalesce({{ tailor.to_money('payload_fields.refunded_text') }}, 0) as refunded_amount,
        {{ tailor.to_money('payload_fields.current_total_text') }} as current_total_amount,
        payload_fields.line_count,
        payload_fields.refund_count,
        payload_fields.refund_line_count,
        payload_fields.batch_id,
        payload_fields.extracted_at
    from payload_fields
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
        parsed.closed_at,
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
        parsed.refund_count,
        parsed.refund_line_count,
        parsed.batch_id,
        parsed.extracted_at
    from parsed
)

select * from final
