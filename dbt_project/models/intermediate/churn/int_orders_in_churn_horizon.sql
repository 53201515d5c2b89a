{#- THE ONE MODEL THAT READS PAST as_of (with churn_labels, its only consumer). Churn labels are about the future of
    the training as-of T = as_of: did the customer order in (T, T + churn_horizon_days]? Staging cannot answer that
    (it hides every version after T), so this model reads every order version itself, from the base table
    base_shopify__order_versions (raw.shopify_orders parsed, whatever as_of is). Features never read it: nothing but
    churn_labels refs this model (a singular test checks).

    One row per order placed in (T, T + horizon] that was not cancelled by T + horizon (not a test order), with the
    customer_id it belongs to in the identity crosswalk as of T. The order's state at T + horizon follows the same
    two-time rule as staging (tailor.as_of_versions at T + horizon: its latest version by then, else its earliest
    later one, whose cancelledAt tells whether it was cancelled by then); known_at and the quarantine apply as in
    staging. Whether T + horizon is observable at all is int_order_loads_summarized's job. -#}

{%- set horizon_end = tailor.add_days(tailor.as_of(), var('churn_horizon_days')) -%}

with

picked as (
    {{ tailor.as_of_versions(
        ref('base_shopify__order_versions'), 'order_id', 'raw.shopify_orders', 'processed_at', at=horizon_end
    ) }}
),

in_horizon as (
    select
        picked.order_id,
        picked.shopify_customer_id,
        picked.email_normalized,
        -- processedAt, createdAt when absent (as in staging)
        picked.processed_at as ordered_at
    from picked
    where picked.processed_at > {{ tailor.as_of() }}
        and picked.processed_at <= {{ horizon_end }}
        and not picked.is_test
        and (picked.cancelled_at is null or picked.cancelled_at > {{ horizon_end }})
),

customers_by_shopify_id as (
    select
        source_record_id as shopify_customer_id,
        min(customer_id) as customer_id
    from {{ ref('customer_identity_crosswalk') }}
    where source = 'shopify_customer'
    group by source_record_id
),

customers_by_email as (
    select
        email_normalized,
        min(customer_id) as customer_id
    from {{ ref('customer_identity_crosswalk') }}
    where email_normalized is not null
    group by email_normalized
),

final as (
    select
        in_horizon.order_id,
        coalesce(customers_by_shopify_id.customer_id, customers_by_email.customer_id) as customer_id,
        in_horizon.ordered_at
    from in_horizon
    left join customers_by_shopify_id
        on in_horizon.shopify_customer_id = customers_by_shopify_id.shopify_customer_id
    left join customers_by_email
        on in_horizon.email_normalized = customers_by_email.email_normalized
)

select * from final
