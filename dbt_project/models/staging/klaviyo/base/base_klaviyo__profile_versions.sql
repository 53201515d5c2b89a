-- One row per raw Klaviyo profile version (deletions included), its payload parsed into typed columns once, the
-- email consent resolved from the version's consent and suppressions. Incremental, append-only, independent of as_of:
-- a run parses only the versions loaded since (macros/base.sql). The text fields are read in one call: one parse of
-- the document, not one per field (tailor.raw_version_texts).
{% set payload_paths = {
    'email': ['attributes', 'email'],
    'external_id': ['attributes', 'external_id'],
    'phone': ['attributes', 'phone_number'],
    'first_name': ['attributes', 'first_name'],
    'last_name': ['attributes', 'last_name'],
    'city': ['attributes', 'location', 'city'],
    'region': ['attributes', 'location', 'region'],
    'country': ['attributes', 'location', 'country'],
    'zip': ['attributes', 'location', 'zip'],
    'timezone': ['attributes', 'location', 'timezone'],
    'birthday_text': ['attributes', 'properties', 'birthday'],
    'marketing_consent_text': ['attributes', 'subscriptions', 'email', 'marketing', 'consent'],
    'can_receive_text': ['attributes', 'subscriptions', 'email', 'marketing', 'can_receive_email_marketing'],
    'consent_updated_text': ['attributes', 'subscriptions', 'email', 'marketing', 'last_updated'],
    'consent_timestamp_text': ['attributes', 'subscriptions', 'email', 'marketing', 'consent_timestamp'],
    'created_at_text': ['attributes', 'created'],
    'last_event_at_text': ['attributes', 'last_event_date'],
} -%}

with

versions as (
    {{ tailor.raw_versions_to_parse(source('klaviyo', 'profiles'), 'klaviyo_profile_id') }}
),

payload_fields as (
    {{ tailor.raw_version_texts('versions', payload_paths, extra={
        'has_spam_complaint': tailor.json_array_has(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'suppression'],
            'reason', 'SPAM_COMPLAINT'
        ),
        'has_hard_bounce': tailor.json_array_has(
            'versions.payload', ['attributes', 'subscriptions', 'email', 'marketing', 'suppression'],
            'reason', 'HARD_BOUNCE'
        ),
    }) }}
),

parsed as (
    select
        payload_fields.record_id as klaviyo_profile_id,
        payload_fields.updated_at,
        payload_fields.is_deleted,
        payload_fields.email,
        nullif(payload_fields.external_id, '') as shopify_customer_legacy_id,
        payload_fields.phone,
        payload_fields.first_name,
        payload_fields.last_name,
        payload_fields.city,
        payload_fields.region,
        payload_fields.country,
        payload_fields.zip,
        payload_fields.timezone,
        {{ tailor.to_date("nullif(payload_fields.birthday_text, '')") }} as date_of_birth,
        lower(payload_fields.marketing_consent_text) as marketing_consent,
        payload_fields.has_spam_complaint,
        payload_fields.has_hard_bounce,
        cast(payload_fields.can_receive_text as boolean) as can_receive_email_marketing,
        {{ tailor.to_timestamp_tz(
            'coalesce(payload_fields.consent_updated_text, payload_fields.consent_timestamp_text)'
        ) }} as email_consent_at,
        {{ tailor.to_timestamp_tz('payload_fields.created_at_text') }} as created_at,
        {{ tailor.to_timestamp_tz('payload_fields.last_event_at_text') }} as last_event_at,
        payload_fields.batch_id,
        payload_fields.extracted_at
    from payload_fields
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
