-- One row per Shopify order existing at as_of: its latest version at or before as_of. Money in shop currency.
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__order_versions'), 'order_id', 'raw.shopify_orders'
    ) }}
),

final as (
    select
        versions.order_id,
        versions.order_number,
        versions.shopify_customer_id,
        versions.email,
        versions.email_normalized,
        versions.created_at,
        versions.processed_at,
        versions.cancelled_at,
        versions.is_cancelled,
        versions.cancel_reason,
        versions.is_test,
        versions.financial_status,
        versions.fulfillment_status,
        versions.currency_code,
        versions.subtotal_amount,
        versions.discounts_amount,
        versions.shipping_amount,
        versions.tax_amount,
        versions.total_amount,
        versions.refunded_amount,
        versions.current_total_amount,
        versions.updated_at
    from versions
)

select * from final
