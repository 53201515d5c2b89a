-- One row per Klaviyo profile existing at as_of (created by then, not deleted by then): its state at as_of by the
-- two-time rule (macros/as_of.sql). For a profile whose loaded versions are all later, the identity and contact
-- attributes come from the earliest one and its email consent only when the consent last changed by as_of (else
-- 'unknown', never marketable). DECISIONLOG.md, "The as-of rule".
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_klaviyo__profile_versions'), 'klaviyo_profile_id', 'raw.klaviyo_profiles', 'created_at'
    ) }}
),

consent as (
    select
        versions.*,
        not versions.is_after_as_of
        or versions.email_consent_at <= {{ tailor.as_of() }}
        -- no change recorded at all: the state a profile starts in held at as_of too
        or (versions.email_consent_at is null and versions.email_consent = 'never_subscribed')
            as is_consent_known_at_as_of
    from versions
),

final as (
    select
        versions.klaviyo_profile_id,
        versions.email,
        versions.email_normalized,
        versions.shopify_customer_legacy_id,
        versions.phone,
        versions.first_name,
        versions.last_name,
        versions.city,
        versions.region,
        versions.country,
        versions.zip,
        versions.timezone,
        versions.date_of_birth,
        case when versions.is_consent_known_at_as_of then versions.email_consent else 'unknown' end as email_consent,
        versions.is_consent_known_at_as_of and versions.can_receive_email_marketing as can_receive_email_marketing,
        {{ tailor.by_as_of('versions.email_consent_at') }} as email_consent_at,
        versions.created_at,
        versions.is_after_as_of as is_reduced_to_as_of,
        {{ tailor.state_updated_at('versions') }} as updated_at,
        -- the API stamps last_event_date when read, which can be later than this version: never show the future
        case when versions.last_event_at <= {{ tailor.as_of() }} then versions.last_event_at end as last_event_at
    from consent as versions
)

select * from final
