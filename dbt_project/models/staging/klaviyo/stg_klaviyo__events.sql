-- One row per Klaviyo event that happened at or before as_of (events are immutable: no version pick).
with

events as (
    {{ tailor.immutable_as_of(
        ref('base_klaviyo__events'), 'event_id', 'raw.klaviyo_events'
    ) }}
),

final as (
    select
        events.event_id,
        events.klaviyo_profile_id,
        events.metric_name,
        {{ tailor.klaviyo_event_type('events.metric_name') }} as event_type,
        events.occurred_at,
        events.campaign_name,
        events.subject,
        events.message_id,
        events.product_id,
        events.product_name,
        events.product_category,
        events.brand,
        events.price_amount,
        events.value_amount,
        events.updated_at
    from events
    where events.occurred_at <= {{ tailor.as_of() }}
)

select * from final
