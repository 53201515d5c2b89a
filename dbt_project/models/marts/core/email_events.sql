{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook=[
            "{{ tailor.email_events_prune(1) }}",
            "{{ tailor.email_events_prune(2) }}",
        ],
    )
}}

{#- Klaviyo events (email and onsite) as of as_of with the unified customer_id. Incremental: the pre-hooks fix the
    rows already there (drop events after as_of or quarantined since, refresh customer_id), so every stored event is
    an as-of event; this select adds every as-of event the table does not hold yet (an anti-join on event_id over
    typed columns: staging reads the base table, no JSON is parsed), so an event loaded late, however far behind the
    others, is never missed. The anti-join reads only the days with more as-of events than stored ones (a late
    event changes its day's count), not the whole history (DECISIONLOG.md). -#}

-- depends_on: {{ ref('base_klaviyo__events') }}
with

events as (

    select
        event_id,
        klaviyo_profile_id,
        metric_name,
        event_type,
        occurred_at,
        campaign_name,
        message_id,
        product_id,
        product_name,
        product_category,
        value_amount,
        updated_at
    from {{ ref('stg_klaviyo__events') }}
    where occurred_at <= {{ tailor.as_of() }}
        and updated_at <= {{ tailor.as_of() }}

),

crosswalk as (

    select
        source_record_id as klaviyo_profile_id,
        min(customer_id) as customer_id
    from {{ ref('customer_identity_crosswalk') }}
    where source = 'klaviyo_profile'
    group by source_record_id

),

{% if is_incremental() -%}

stored_days as (

    select
        occurred_date,
        count(*) as events
    from {{ this }}
    group by occurred_date

),

-- counted from the base table, not read through staging: the counts need no event key, and the keys are most of
-- what a scan of the 52M events at 1M customers reads
as_of_days as (
    {{ tailor.immutable_as_of_day_counts(
        ref('base_klaviyo__events'), 'event_id', 'raw.klaviyo_events', 'occurred_at',
        'records.occurred_at <= ' ~ tailor.as_of()
    ) }}
),

changed_days as (

    select as_of_days.record_date as occurred_date
    from as_of_days
    left join stored_days
        on as_of_days.record_date = stored_days.occurred_date
    where stored_days.occurred_date is null or stored_days.events <> as_of_days.records

),

{%- endif %}

new_events as (

    select events.*
    from events
    {% if is_incremental() -%}
    where
        {{ tailor.utc_date('events.occurred_at') }} in (select changed_days.occurred_date from changed_days)
        -- the stored events of those days only: an event's day never changes (one version), and were it to, the
        -- delete+insert on event_id would still replace the stored row (DECISIONLOG.md: 13.2 -> 11.9 s an hour)
        and not exists (
            select 1
            from {{ this }} as existing
            where
                existing.occurred_date in (select changed_days.occurred_date from changed_days)
                and existing.event_id = events.event_id
        )
    {%- endif %}

),

final as (

    select
        new_events.event_id,
        crosswalk.customer_id,
        new_events.klaviyo_profile_id,
        new_events.metric_name,
        new_events.event_type,
        new_events.occurred_at,
        {{ tailor.utc_date('new_events.occurred_at') }} as occurred_date,
        {{ tailor.utc_hour('new_events.occurred_at') }} as occurred_hour_utc,
        new_events.campaign_name,
        new_events.message_id,
        new_events.product_id,
        new_events.product_name,
        new_events.product_category,
        new_events.value_amount,
        new_events.updated_at
    from new_events
    left join crosswalk
        on new_events.klaviyo_profile_id = crosswalk.klaviyo_profile_id

)

select * from final
