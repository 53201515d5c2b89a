-- One row per raw Shopify product version (deletions included), its payload parsed into typed columns once, with
-- the number of variants it nests. Incremental, append-only, independent of as_of (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('shopify', 'products'), 'product_id') }}
),

final as (
    select
        versions.record_id as product_id,
        versions.updated_at,
        {{ tailor.version_id('versions.record_id', 'versions.updated_at') }} as product_version_id,
        versions.is_deleted,
        coalesce(
            {{ tailor.json_text('versions.payload', ['legacyResourceId']) }},
            replace(versions.record_id, 'gid://shopify/Product/', '')
        ) as product_legacy_id,
        {{ tailor.json_text('versions.payload', ['title']) }} as product_title,
        {{ tailor.json_text('versions.payload', ['handle']) }} as handle,
        nullif({{ tailor.json_text('versions.payload', ['productType']) }}, '') as product_category,
        {{ tailor.json_text('versions.payload', ['vendor']) }} as vendor,
        lower({{ tailor.json_text('versions.payload', ['status']) }}) as status,
        {{ tailor.json_string_array_agg('versions.payload', ['tags']) }} as tags,
        -- null when the product is not on the Online Store / has no featured image (or the payload predates them)
        {{ tailor.json_text('versions.payload', ['onlineStoreUrl']) }} as online_store_url,
        {{ tailor.json_text('versions.payload', ['featuredMedia', 'preview', 'image', 'url']) }} as image_url,
        {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['createdAt'])) }} as created_at,
        {{ tailor.json_array_length('versions.payload', ['variants']) }} as variant_count,
        versions.batch_id,
        versions.extracted_at
    from versions
)

select * from final
