-- One row per raw Klaviyo profile version (deletions included), its payload parsed into typed columns once, the
-- email consent resolved from the version's consent and suppressions. Incremental, append-only, independent of as_of:
-- a run parses only the versions loaded since (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('klaviyo', 'profiles'), 'klaviyo_profile_id') }}
),

parsed as (
    select
        versions.record_id as klaviyo_profile_id,
        versions.updated_at,
        versions.is_deleted,
        {{ tailor.json_text('versions.payload', ['attributes', 'email']) }} as email,
        nullif({{ tailor.json_text('versions.payload', ['attributes', 'external_id']) }}, '')
            as shopify_customer_legacy_id,
        {{ tailor.json_text('versions.payload', ['attributes', 'phone_number']) }} as phone,
        {{ tailor.json_text('versions.payload', ['attributes', 'first_name']) }} as first_name,
        {{ tailor.json_text('versions.payload', ['attributes', 'last_name']) }} as last_name,
        {{ tailor.json_text('versions.payload', ['attributes', 'location', 'city']) }} as city,
        {{ tailor.json_text('versions.payload', ['attributes', 'location', 'region']) }} as region,
        {{ tailor.json_text('versions.payload', ['attributes', 'location', 'country']) }} as country,
        {{ tailor.json_text('versions.payload', ['attributes', 'location', 'zip']) }} as zip,
        {{ tailor.json_text('versions.payload', ['attributes', 'location', 'timezone']) }} as timezone,
        {{ tailor.to_date(
            "nullif(" ~ tailor.json_text('versions.payload', ['attributes', 'properties', 'birthday']) ~ ", '')"
        ) }} as date_of_birth,
        lower({{ tailor.json_text(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'consent']
        ) }}) as marketing_consent,
        {{ tailor.json_array_has(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'suppression'],
            'reason', 'SPAM_COMPLAINT'
        ) }} as has_spam_complaint,
        {{ tailor.json_array_has(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'suppression'],
            'reason', 'HARD_BOUNCE'
        ) }} as has_hard_bounce,
        cast({{ tailor.json_text(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'can_receive_email_marketing']
        ) }} as boolean) as can_receive_email_marketing,
        {{ tailor.to_timestamp_tz(
            "coalesce("
            ~ tailor.json_text('versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'last_updated'])
            ~ ", "
            ~ tailor.json_text('versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'consent_timestamp'])
            ~ ")"
        ) }} as email_consent_at,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['attributes', 'created'])) }} as created_at,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['attributes', 'last_event_date'])) }}
            as last_event_at,
        versions.batch_id,
        versions.extracted_at
    from versions
),

final as (
    select
        parsed.klaviyo_profile_id,
        parsed.updated_at,
        parsed.is_deleted,
        parsed.email,
        {{ tailor.normalize_email('parsed.email') }} as email_normalized,
        parsed.shopify_customer_legacy_id,
        parsed.phone,
        parsed.first_name,
        parsed.last_name,
        parsed.city,
        parsed.region,
        parsed.country,
        parsed.zip,
        parsed.timezone,
        parsed.date_of_birth,
        case
            when parsed.has_spam_complaint then 'spam_complaint'
            when parsed.has_hard_bounce then 'bounced'
            when parsed.marketing_consent in ('subscribed', 'unsubscribed') then parsed.marketing_consent
            else 'never_subscribed'
        end as email_consent,
        coalesce(parsed.can_receive_email_marketing, false) as can_receive_email_marketing,
        parsed.email_consent_at,
        parsed.created_at,
        parsed.last_event_at,
        parsed.batch_id,
        parsed.extracted_at
    from parsed
)

select * from final
