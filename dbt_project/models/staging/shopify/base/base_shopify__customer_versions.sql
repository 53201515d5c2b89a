-- One row per raw Shopify customer version (deletions included), its payload parsed into typed columns once.
-- Incremental, append-only, independent of as_of: a run parses only the versions loaded since (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('shopify', 'customers'), 'shopify_customer_id') }}
),

parsed as (
    select
        versions.record_id as shopify_customer_id,
        versions.updated_at,
        versions.is_deleted,
        coalesce(
            {{ tailor.json_text('versions.payload', ['legacyResourceId']) }},
            replace(versions.record_id, 'gid://shopify/Customer/', '')
        ) as shopify_customer_legacy_id,
        coalesce(
            {{ tailor.json_text('versions.payload', ['defaultEmailAddress', 'emailAddress']) }},
            {{ tailor.json_text('versions.payload', ['email']) }}
        ) as email,
        {{ tailor.json_text('versions.payload', ['firstName']) }} as first_name,
        {{ tailor.json_text('versions.payload', ['lastName']) }} as last_name,
        coalesce(
            {{ tailor.json_text('versions.payload', ['defaultPhoneNumber', 'phoneNumber']) }},
            {{ tailor.json_text('versions.payload', ['defaultAddress', 'phone']) }}
        ) as phone,
        {{ tailor.json_text('versions.payload', ['defaultAddress', 'city']) }} as city,
        {{ tailor.json_text('versions.payload', ['defaultAddress', 'provinceCode']) }} as region_code,
        {{ tailor.json_text('versions.payload', ['defaultAddress', 'countryCodeV2']) }} as country_code,
        {{ tailor.json_text('versions.payload', ['defaultAddress', 'country']) }} as country,
        {{ tailor.json_text('versions.payload', ['defaultAddress', 'zip']) }} as zip,
        {{ tailor.json_text('versions.payload', ['locale']) }} as locale,
        lower({{ tailor.json_text('versions.payload', ['state']) }}) as account_state,
        {{ tailor.json_string_array_agg('versions.payload', ['tags']) }} as tags,
        lower(coalesce(
            {{ tailor.json_text('versions.payload', ['emailMarketingConsent', 'marketingState']) }},
            {{ tailor.json_text('versions.payload', ['defaultEmailAddress', 'marketingState']) }}
        )) as email_marketing_state,
        {{ tailor.to_timestamp_tz(
            tailor.json_text('versions.payload', ['emailMarketingConsent', 'consentUpdatedAt'])
        ) }} as email_consent_updated_at,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['createdAt'])) }} as created_at,
        versions.batch_id,
        versions.extracted_at
    from versions
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
