-- One row per refund of each raw Shopify order version, parsed once: when it was made and the money it returned
-- (shipping and tax included). Incremental, append-only, independent of as_of: a run parses the refunds of the order
-- versions (base_shopify__order_versions with refund_count > 0) whose refunds are not here yet (macros/base.sql).
with

versions as (
    {{ tailor.raw_parent_versions_to_parse(
        source('shopify', 'orders'), ref('base_shopify__order_versions'), 'order_id', 'refund_count',
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

final as (
    select
        {{ tailor.json_text('refunds.refund', ['id']) }} as refund_id,
        refunds.order_id,
        refunds.order_updated_at,
        refunds.order_version_id,
        {{ tailor.to_timestamp_tz(tailor.json_text('refunds.refund', ['createdAt'])) }} as refunded_at,
        {{ tailor.to_money(tailor.json_text('refunds.refund', ['totalRefundedSet', 'shopMoney', 'amount'])) }}
            as refunded_amount
    from refunds
)

select * from final
