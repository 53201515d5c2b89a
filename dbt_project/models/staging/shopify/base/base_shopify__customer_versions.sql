-- One row per raw Shopify customer version (deletions included), its payload parsed into typed columns once.
-- Incremental, append-only, independent of as_of: a run parses only the versions loaded since (macros/base.sql).
-- The text fields are read in one call: one parse of the document, not one per field (tailor.raw_version_texts).
{% set payload_paths = {
    'legacy_id': ['legacyResourceId'],
    'default_email': ['defaultEmailAddress', 'emailAddress'],
    'email': ['email'],
    'first_name': ['firstName'],
    'last_name': ['lastName'],
    'default_phone': ['defaultPhoneNumber', 'phoneNumber'],
    'address_phone': ['defaultAddress', 'phone'],
    'city': ['defaultAddress', 'city'],
    'region_code': ['defaultAddress', 'provinceCode'],
    'country_code': ['defaultAddress', 'countryCodeV2'],
    'country': ['defaultAddress', 'country'],
    'zip': ['defaultAddress', 'zip'],
    'locale': ['locale'],
    'state': ['state'],
    'consent_marketing_state': ['emailMarketingConsent', 'marketingState'],
    'address_marketing_state': ['defaultEmailAddress', 'marketingState'],
    'consent_updated_at_text': ['emailMarketingConsent', 'consentUpdatedAt'],
    'created_at_text': ['createdAt'],
} -%}

with

versions as (
    {{ tailor.raw_versions_to_parse(source('shopify', 'customers'), 'shopify_customer_id') }}
),

payload_fields as (
    {{ tailor.raw_version_texts('versions', payload_paths, extra={
        'tags': tailor.json_string_array_agg('versions.payload', ['tags']),
    }) }}
),

parsed as (
    select
        payload_fields.record_id as shopify_customer_id,
        payload_fields.updated_at,
        payload_fields.is_deleted,
        coalesce(
            payload_fields.legacy_id, replace(payload_fields.record_id, 'gid://shopify/Customer/', '')
        ) as shopify_customer_legacy_id,
        coalesce(payload_fields.default_email, payload_fields.email) as email,
        payload_fields.first_name,
        payload_fields.last_name,
        coalesce(payload_fields.default_phone, payload_fields.address_phone) as phone,
        payload_fields.city,
        payload_fields.region_code,
        payload_fields.country_code,
        payload_fields.country,
        payload_fields.zip,
        payload_fields.locale,
        lower(payload_fields.state) as account_state,
        payload_fields.tags,
        lower(coalesce(payload_fields.consent_marketing_state, payload_fields.address_marketing_state))
            as email_marketing_state,
        {{ tailor.to_timestamp_tz('payload_fields.consent_updated_at_text') }} as email_consent_updated_at,
        {{ tailor.to_timestamp_tz('payload_fields.created_at_text') }} as created_at,
        payload_fields.batch_id,
        payload_fields.extracted_at
    from payload_fields
),

final as (
    select
        parsed.shopify_customer_id,
        parsed.updated_at,
        parsed.is_deleted,
        parsed.shopify_customer_legacy_id,
        parsed.email,
        {{ tailor.normalize_email('parsed.email') }} as email_normalized,
        parsed.first_name,
        parsed.last_name,
        parsed.phone,
        parsed.city,
        parsed.region_code,
        parsed.country_code,
        parsed.country,
        parsed.zip,
        parsed.locale,
        parsed.account_state,
        parsed.tags,
        parsed.email_marketing_state,
        parsed.email_consent_updated_at,
        parsed.created_at,
        parsed.batch_id,
        parsed.extracted_at
    from parsed
)

select * from final
