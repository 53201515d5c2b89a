-- Shopify orders as of as_of with the unified customer they belong to, their refunds by as_of and their net sales.
-- Grain: one row per non-test order. Net sales as Shopify reports them: gross sales - discounts - returns (the
-- refunded line items' value), without shipping and taxes; 0 for an order cancelled by as_of (DECISIONLOG.md).
-- An order belongs to the customer of its live Shopify account; an order without one (guest checkout, or its
-- account deleted by as_of) belongs to the customer of its normalized email.
with

orders as (
    select
        order_id,
        order_number,
        shopify_customer_id,
        email_normalized,
        processed_at,
        cancelled_at,
        is_cancelled,
        is_test,
        financial_status,
        fulfillment_status,
        currency_code,
        subtotal_amount,
        discounts_amount,
        shipping_amount,
        tax_amount,
        total_amount,
        refunded_amount,
        returns_amount,
        updated_at
    from {{ ref('stg_shopify__orders') }}
),

crosswalk as (
    select
        source,
        source_record_id,
        customer_id
    from {{ ref('customer_identity_crosswalk') }}
),

attributed as (
    select
        orders.order_id,
        coalesce(account.customer_id, guest.customer_id) as customer_id,
        account.customer_id is null as is_guest,
        case when account.customer_id is not null then orders.shopify_customer_id end as shopify_customer_id,
        orders.email_normalized,
        orders.order_number,
        orders.processed_at as ordered_at,
        orders.is_cancelled,
        orders.cancelled_at,
        orders.financial_status,
        orders.fulfillment_status,
        orders.currency_code,
        cast(orders.subtotal_amount + coalesce(orders.discounts_amount, 0) as numeric(18, 2)) as gross_sales_amount,
        orders.discounts_amount,
        orders.returns_amount,
        case
            when orders.is_cancelled then cast(0 as numeric(18, 2))
            else cast(orders.subtotal_amount - orders.returns_amount as numeric(18, 2))
        end as net_sales_amount,
        orders.subtotal_amount,
        orders.shipping_amount,
        orders.tax_amount,
        orders.total_amount,
        orders.refunded_amount,
        case
            when orders.is_cancelled then cast(0 as numeric(18, 2))
            else cast(orders.total_amount - orders.refunded_amount as numeric(18, 2))
        end as current_total_amount,
        orders.updated_at
    from orders
    left join crosswalk as account
        on
            account.source = 'shopify_customer'
            and orders.shopify_customer_id = account.source_record_id
    left join crosswalk as guest
        on
            guest.source = 'shopify_guest_email'
            and orders.email_normalized = guest.source_record_id
    where not orders.is_test
),

final as (
    select * from attributed
)

select * from final
