-- One row per raw HubSpot contact version (archivals included), its payload parsed into typed columns once.
-- Incremental, append-only, independent of as_of: a run parses only the versions loaded since (macros/base.sql).
-- The text fields are read in one call: one parse of the document, not one per field (tailor.raw_version_texts).
{% set payload_paths = {
    'archived_text': ['archived'],
    'email': ['properties', 'email'],
    'first_name': ['properties', 'firstname'],
    'last_name': ['properties', 'lastname'],
    'phone': ['properties', 'phone'],
    'city': ['properties', 'city'],
    'country': ['properties', 'country'],
    'zip': ['properties', 'zip'],
    'date_of_birth_text': ['properties', 'date_of_birth'],
    'lifecycle_stage': ['properties', 'lifecyclestage'],
    'lead_status': ['properties', 'hs_lead_status'],
    'owner_id': ['properties', 'hubspot_owner_id'],
    'created_at_text': ['createdAt'],
    'createdate_text': ['properties', 'createdate'],
} -%}

with

versions as (
    {{ tailor.raw_versions_to_parse(source('hubspot', 'contacts'), 'hubspot_contact_id') }}
),

payload_fields as (
    {{ tailor.raw_version_texts('versions', payload_paths) }}
),

parsed as (
    select
        payload_fields.record_id as hubspot_contact_id,
        payload_fields.updated_at,
        payload_fields.is_deleted,
        coalesce(cast(payload_fields.archived_text as boolean), false) as is_archived,
        payload_fields.email,
        payload_fields.first_name,
        payload_fields.last_name,
        payload_fields.phone,
        payload_fields.city,
        payload_fields.country,
        payload_fields.zip,
        {{ tailor.to_date("nullif(payload_fields.date_of_birth_text, '')") }} as date_of_birth,
        lower(payload_fields.lifecycle_stage) as lifecycle_stage,
        lower(payload_fields.lead_status) as lead_status,
        payload_fields.owner_id,
        {{ tailor.to_timestamp_tz('coalesce(payload_fields.created_at_text, payload_fields.createdate_text)') }}
            as created_at,
        payload_fields.batch_id,
        payload_fields.extracted_at
    from payload_fields
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
