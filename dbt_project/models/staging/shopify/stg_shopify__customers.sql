-- One row per Shopify customer existing at as_of (created by then, not deleted by then): its state at as_of by the
-- two-time rule (macros/as_of.sql). For a customer whose loaded versions are all later, the identity and contact
-- attributes come from the earliest one, consent only when it last changed by as_of, and the state and tags (which
-- carry no time of their own) are unknown (null). DECISIONLOG.md, "The as-of rule".
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__customer_versions'), 'shopify_customer_id', 'raw.shopify_customers', 'created_at'
    ) }}
),

final as (
    select
        versions.shopify_customer_id,
        versions.shopify_customer_legacy_id,
        versions.email,
        versions.email_normalized,
        versions.first_name,
        versions.last_name,
        versions.phone,
        versions.city,
        versions.region_code,
        versions.country_code,
        versions.country,
        versions.zip,
        versions.locale,
        case when not versions.is_after_as_of then versions.account_state end as account_state,
        case when not versions.is_after_as_of then versions.tags end as tags,
        case
            when not versions.is_after_as_of then versions.email_marketing_state
            when versions.email_consent_updated_at <= {{ tailor.as_of() }} then versions.email_marketing_state
            -- no change recorded at all: the state a customer starts in held at as_of too
            when versions.email_consent_updated_at is null and versions.email_marketing_state = 'not_subscribed'
                then versions.email_marketing_state
            else 'unknown'
        end as email_marketing_state,
        {{ tailor.by_as_of('versions.email_consent_updated_at') }} as email_consent_updated_at,
        versions.created_at,
        versions.is_after_as_of as is_reduced_to_as_of,
        {{ tailor.state_updated_at('versions') }} as updated_at
    from versions
)

select * from final
