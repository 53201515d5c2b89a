-- One row per Shopify order existing at as_of (placed by then): its state at as_of by the two-time rule
-- (macros/as_of.sql): the latest version at or before as_of, else the earliest later version reduced to as_of.
-- Money as placed, in shop currency, and what the refunds made by as_of returned (a version later than as_of lists
-- later refunds too: they are left out). The refunds are summed here, on the picked version, rather than by a second
-- as-of pick in a refunds model: one pick of the order versions per build is the cost that matters.
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__order_versions'), 'order_id', 'raw.shopify_orders', 'processed_at'
    ) }}
),

refund_versions as (
    select
        order_version_id,
        refunded_at,
        refunded_amount
    from {{ ref('base_shopify__refund_versions') }}
),

refund_line_versions as (
    select
        order_version_id,
        refunded_at,
        subtotal_amount
    from {{ ref('base_shopify__refund_line_versions') }}
),

refunded as (
    select
        refund_versions.order_version_id,
        sum(refund_versions.refunded_amount) as refunded_amount
    from refund_versions
    where refund_versions.refunded_at <= {{ tailor.as_of() }}
    group by refund_versions.order_version_id
),

returned as (
    select
        refund_line_versions.order_version_id,
        sum(refund_line_versions.subtotal_amount) as returns_amount
    from refund_line_versions
    where refund_line_versions.refunded_at <= {{ tailor.as_of() }}
    group by refund_line_versions.order_version_id
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
        {{ tailor.by_as_of('versions.cancelled_at') }} as cancelled_at,
        versions.cancelled_at is not null and versions.cancelled_at <= {{ tailor.as_of() }} as is_cancelled,
        case when versions.cancelled_at <= {{ tailor.as_of() }} then versions.cancel_reason end as cancel_reason,
        {{ tailor.by_as_of('versions.closed_at') }} as closed_at,
        versions.is_test,
        -- statuses carry no time of their own: unknown at as_of when the version is later
        case when not versions.is_after_as_of then versions.financial_status end as financial_status,
        case when not versions.is_after_as_of then versions.fulfillment_status end as fulfillment_status,
        versions.currency_code,
        versions.subtotal_amount,
        versions.discounts_amount,
        versions.shipping_amount,
        versions.tax_amount,
        versions.total_amount,
        {{ tailor.to_money('coalesce(refunded.refunded_amount, 0)') }} as refunded_amount,
        {{ tailor.to_money('coalesce(returned.returns_amount, 0)') }} as returns_amount,
        versions.is_after_as_of as is_reduced_to_as_of,
        {{ tailor.state_updated_at('versions') }} as updated_at
    from versions
    left join refunded
        on versions.order_version_id = refunded.order_version_id
    left join returned
        on versions.order_version_id = returned.order_version_id
)

select * from final
