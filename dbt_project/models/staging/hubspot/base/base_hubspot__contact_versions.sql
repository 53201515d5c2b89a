-- One row per raw HubSpot contact version (archivals included), its payload parsed into typed columns once.
-- Incremental, append-only, independent of as_of: a run parses only the versions loaded since (macros/base.sql).
with

versions as (
    {{ tailor.raw_versions_to_parse(source('hubspot', 'contacts'), 'hubspot_contact_id') }}
),

parsed as (
    select
        versions.record_id as hubspot_contact_id,
        versions.updated_at,
        versions.is_deleted,
        coalesce(cast({{ tailor.json_text('versions.payload', ['archived']) }} as boolean), false) as is_archived,
        {{ tailor.json_text('versions.payload', ['properties', 'email']) }} as email,
        {{ tailor.json_text('versions.payload', ['properties', 'firstname']) }} as first_name,
        {{ tailor.json_text('versions.payload', ['properties', 'lastname']) }} as last_name,
        {{ tailor.json_text('versions.payload', ['properties', 'phone']) }} as phone,
        {{ tailor.json_text('versions.payload', ['properties', 'city']) }} as city,
        {{ tailor.json_text('versions.payload', ['properties', 'country']) }} as country,
        {{ tailor.json_text('versions.payload', ['properties', 'zip']) }} as zip,
        {{ tailor.to_date(
            "nullif(" ~ tailor.json_text('versions.payload', ['properties', 'date_of_birth']) ~ ", '')"
        ) }} as date_of_birth,
        lower({{ tailor.json_text('versions.payload', ['properties', 'lifecyclestage']) }}) as lifecycle_stage,
        lower({{ tailor.json_text('versions.payload', ['properties', 'hs_lead_status']) }}) as lead_status,
        {{ tailor.json_text('versions.payload', ['properties', 'hubspot_owner_id']) }} as owner_id,
        {{ tailor.to_timestamp_tz(
            "coalesce(" ~ tailor.json_text('versions.payload', ['createdAt']) ~ ", "
            ~ tailor.json_text('versions.payload', ['properties', 'createdate']) ~ ")"
        ) }} as created_at,
        versions.batch_id,
        versions.extracted_at
    from versions
),

final as (
    select
        parsed.hubspot_contact_id,
        parsed.updated_at,
        parsed.is_deleted,
        parsed.is_archived,
        parsed.email,
        {{ tailor.normalize_email('parsed.email') }} as email_normalized,
        parsed.first_name,
        parsed.last_name,
        parsed.phone,
        parsed.city,
        parsed.country,
        parsed.zip,
        parsed.date_of_birth,
        parsed.lifecycle_stage,
        parsed.lead_status,
        parsed.owner_id,
        parsed.created_at,
        parsed.batch_id,
        parsed.extracted_at
    from parsed
)

select * from final
