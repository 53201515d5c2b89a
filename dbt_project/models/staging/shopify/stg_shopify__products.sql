-- One row per Shopify product existing at as_of (created by then, not deleted by then): its state at as_of by the
-- two-time rule (macros/as_of.sql). For a product whose loaded versions are all later, its description (title,
-- category, vendor, storefront URL, image) comes from the earliest one; its status and tags (which carry no time of
-- their own) are unknown.
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_shopify__product_versions'), 'product_id', 'raw.shopify_products', 'created_at'
    ) }}
),

final as (
    select
        versions.product_id,
        versions.product_legacy_id,
        versions.product_title,
        versions.handle,
        versions.product_category,
        versions.vendor,
        case when not versions.is_after_as_of then versions.status end as status,
        case when not versions.is_after_as_of then versions.tags end as tags,
        versions.online_store_url,
        versions.image_url,
        versions.created_at,
        versions.is_after_as_of as is_reduced_to_as_of,
        {{ tailor.state_updated_at('versions') }} as updated_at
    from versions
)

select * from final
