-- One row per Shopify customer existing at as_of: its latest version at or before as_of (deleted ones dropped).
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__customer_versions'), 'shopify_customer_id', 'raw.shopify_customers'
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
        versions.account_state,
        versions.tags,
        versions.email_marketing_state,
        versions.email_consent_updated_at,
        versions.created_at,
        versions.updated_at
    from versions
)

select * from final
