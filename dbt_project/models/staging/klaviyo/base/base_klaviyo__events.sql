-- One row per raw Klaviyo event (events are immutable: one version each), its payload parsed into typed columns
-- once. Incremental, append-only, independent of as_of: a run parses only the events loaded since (macros/base.sql).
{% set payload_paths = {
    'klaviyo_profile_id': ['relationships', 'profile', 'data', 'id'],
    'metric_name': ['included', 0, 'attributes', 'name'],
    'occurred_at_text': ['attributes', 'datetime'],
    'campaign_name': ['attributes', 'event_properties', 'Campaign Name'],
    'subject': ['attributes', 'event_properties', 'Subject'],
    'message_id': ['attributes', 'event_properties', '$message'],
    'product_legacy_id': ['attributes', 'event_properties', 'ProductID'],
    'product_name': ['attributes', 'event_properties', 'ProductName'],
    'product_category': ['attributes', 'event_properties', 'Categories', 0],
    'brand': ['attributes', 'event_properties', 'Brand'],
    'price_text': ['attributes', 'event_properties', 'Price'],
    'value_text': ['attributes', 'event_properties', '$value'],
} -%}

with

versions as (
    {{ tailor.raw_versions_to_parse(source('klaviyo', 'events'), 'event_id') }}
),

payload_fields as (
    {{ tailor.raw_version_texts('versions', payload_paths) }}
),

parsed as (
    select
        payload_fields.record_id as event_id,
        payload_fields.updated_at,
        payload_fields.is_deleted,
        payload_fields.klaviyo_profile_id,
        payload_fields.metric_name,
        coalesce(
            {{ tailor.to_timestamp_tz('payload_fields.occurred_at_text') }},
            payload_fields.updated_at
        ) as occurred_at,
        payload_fields.campaign_name,
        payload_fields.subject,
        payload_fields.message_id,
        nullif(payload_fields.product_legacy_id, '') as product_legacy_id,
        payload_fields.product_name,
        payload_fields.product_category,
        payload_fields.brand,
        {{ tailor.to_money('payload_fields.price_text') }} as price_amount,
        {{ tailor.to_money('payload_fields.value_text') }} as value_amount,
        payload_fields.batch_id,
        payload_fields.extracted_at
    from payload_fields
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
        parsed.batch_id,
        parsed.extracted_at
    from parsed
)

select * from final
