-- One row per Klaviyo profile existing at as_of: its latest version at or before as_of (deleted ones dropped).
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_klaviyo__profile_versions'), 'klaviyo_profile_id', 'raw.klaviyo_profiles'
    ) }}
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
        versions.email_consent,
        versions.can_receive_email_marketing,
        versions.email_consent_at,
        versions.created_at,
        versions.updated_at,
        -- the API stamps last_event_date when read, which can be later than this version: never show the future
        case when versions.last_event_at <= {{ tailor.as_of() }} then versions.last_event_at end as last_event_at
    from versions
)

select * from final
