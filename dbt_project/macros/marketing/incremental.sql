{#- Pre-hooks of the incremental email_events. Before new rows go in, they make the rows already there what a full
    refresh as of this run's as_of would hold, without reading staging (cheap: no JSON is parsed):
      1. delete the events after as_of (a backwards run: a backfill for an earlier date), those the raw gate
         quarantined since they were stored and, with known_at, those loaded after it (a reproduction of a past run
         after later ones): every stored event is then one staging shows, which the insert's per-day counts rely on;
      2. set customer_id to the profile's current customer in the identity crosswalk, null when the profile does
         not exist as of as_of (merged, re-keyed, deleted or not yet created profiles).
    Returns one statement per step; empty (no hook) on a full build. -#}
{% macro email_events_prune(step) -%}
    {%- if is_incremental() -%}
        {%- if step == 1 -%}
            {%- set known = tailor.known_at() -%}
            delete from {{ this }}
            where occurred_at > {{ tailor.as_of() }} or updated_at > {{ tailor.as_of() }}
                or (event_id, updated_at) in ({{ tailor.quarantined_version_keys('raw.klaviyo_events') }})
            {%- if known is not none %}
                or not exists (
                    select 1
                    from {{ ref('base_klaviyo__events') }} as loaded
                    where loaded.event_id = {{ this }}.event_id and {{ tailor.loaded_by_known_at('loaded') }}
                )
            {%- endif %}
        {%- elif step == 2 -%}
            update {{ this }} as existing
            set customer_id = (
                select min(crosswalk.customer_id)
                from {{ ref('customer_identity_crosswalk') }} as crosswalk
                where crosswalk.source = 'klaviyo_profile'
                    and crosswalk.source_record_id = existing.klaviyo_profile_id
            )
            where customer_id is distinct from (
                select min(crosswalk.customer_id)
                from {{ ref('customer_identity_crosswalk') }} as crosswalk
                where crosswalk.source = 'klaviyo_profile'
                    and crosswalk.source_record_id = existing.klaviyo_profile_id
            )
        {%- else -%}
            {{ exceptions.raise_compiler_error("email_events_prune: step must be 1 or 2") }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- Pre-hook of a by-date incremental model: delete the partition this run rewrites (rows with
    date_column = the UTC date of as_of), so a rerun, a later run the same day or a backfill of a past date replaces
    exactly that date and leaves every other date as it was. Empty (no hook) on a full build. -#}
{% macro delete_as_of_partition(date_column='as_of_date') -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ date_column }} = {{ tailor.utc_date(tailor.as_of()) }}
    {%- endif -%}
{%- endmacro %}
