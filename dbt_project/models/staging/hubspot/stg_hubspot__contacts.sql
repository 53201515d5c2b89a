-- One row per HubSpot contact existing at as_of: its latest version at or before as_of (archived ones dropped).
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_hubspot__contact_versions'), 'hubspot_contact_id', 'raw.hubspot_contacts'
    ) }}
),

final as (
    select
        versions.hubspot_contact_id,
        versions.email,
        versions.email_normalized,
        versions.first_name,
        versions.last_name,
        versions.phone,
        versions.city,
        versions.country,
        versions.zip,
        versions.date_of_birth,
        versions.lifecycle_stage,
        versions.lead_status,
        versions.owner_id,
        versions.created_at,
        versions.updated_at
    from versions
    -- an archived contact is a deletion even when a loader did not flag it
    where not versions.is_archived
)

select * from final
