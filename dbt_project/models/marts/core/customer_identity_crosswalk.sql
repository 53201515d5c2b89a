-- Which unified customer each source record belongs to, as of as_of. Grain: one row per source record
-- (source, source_record_id): every Shopify customer, guest-checkout email, HubSpot contact and Klaviyo profile.
with

components as (
    select
        source,
        source_record_id,
        customer_id,
        email_normalized,
        linked_shopify_customer_id,
        component_record_count
    from {{ ref('int_identity_components_resolved') }}
),

email_counts as (
    select
        components.customer_id,
        components.email_normalized,
        count(*) as records_with_email
    from components
    where components.email_normalized is not null
    group by components.customer_id, components.email_normalized
),

final as (
    select
        components.source,
        components.source_record_id,
        components.customer_id,
        components.email_normalized,
        case
            when components.linked_shopify_customer_id is not null then 'external_id'
            when email_counts.records_with_email > 1 then 'email'
            when components.component_record_count > 1 then 'external_id'
            else 'unmatched'
        end as match_rule
    from components
    left join email_counts
        on
            components.customer_id = email_counts.customer_id
            and components.email_normalized = email_counts.email_normalized
)

select * from final
