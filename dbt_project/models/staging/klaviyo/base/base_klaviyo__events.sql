-- One row per raw Klaviyo event (events are immutable: one version each), its payload parsed into typed columns
-- once. Incremental, append-only, independent of as_of: a run parses only the events loaded since (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('klaviyo', 'events'), 'event_id') }}
),

parsed as (
    select
        versions.record_id as event_id,
        versions.updated_at,
        versions.is_deleted,
        {{ tailor.json_text('versions.payload', ['relationships', 'profile', 'data', 'id']) }} as klaviyo_profile_id,
        {{ tailor.json_text('versions.payload', ['included', 0, 'attributes', 'name']) }} as metric_name,
        coalesce(
            {{ tailor.to_timestamp_tz(tailor.json_text('versions.payload', ['attributes', 'datetime'])) }},
            versions.updated_at
        ) as occurred_at,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'Campaign Name']) }}
            as campaign_name,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'Subject']) }} as subject,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', '$message']) }} as message_id,
        nullif({{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'ProductID']) }}, '')
            as product_legacy_id,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'ProductName']) }} as product_name,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'Categories', 0]) }}
            as product_category,
        {{ tailor.json_text('versions.payload', ['attributes', 'event_properties', 'Brand']) }} as brand,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['attributes', 'event_properties', 'Price'])) }}
            as price_amount,
        {{ tailor.to_money(tailor.json_text('versions.payload', ['attributes', 'event_properties', '$value'])) }}
            as value_amount,
        versions.batch_id
    from versions
),

final as (
    select
        parsed.event_id,
        parsed.updated_at,
        parsed.is_deleted,
        parsed.klaviyo_profile_id,
        parsed.metric_name,
        parsed.occurred_at,
        parsed.campaign_name,
        parsed.subject,
        parsed.message_id,
        case
            when parsed.product_legacy_id is not null then 'gid://shopify/Product/' || parsed.product_legacy_id
        end as product_id,
        parsed.product_name,
        parsed.product_category,
        parsed.brand,
        parsed.price_amount,
        parsed.value_amount,
        parsed.batch_id
    from parsed
)

select * from final
