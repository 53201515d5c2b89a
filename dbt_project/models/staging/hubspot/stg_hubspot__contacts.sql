-- One row per HubSpot contact existing at as_of (created by then, not archived by then): its state at as_of by the
-- two-time rule (macros/as_of.sql). For a contact whose loaded versions are all later, the identity and contact
-- attributes come from the earliest one; lifecycle stage, lead status and owner (which carry no time of their own
-- here) are unknown (null). DECISIONLOG.md, "The as-of rule".
with

versions as (
    {{ tailor.as_of_versions(
        ref('base_hubspot__contact_versions'), 'hubspot_contact_id', 'raw.hubspot_contacts', 'created_at'
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
        case when not versions.is_after_as_of then versions.lifecycle_stage end as lifecycle_stage,
        case when not versions.is_after_as_of then versions.lead_status end as lead_status,
        case when not versions.is_after_as_of then versions.owner_id end as owner_id,
        versions.created_at,
        versions.is_after_as_of as is_reduced_to_as_of,
        {{ tailor.state_updated_at('versions') }} as updated_at
    from versions
    -- an archived contact is a deletion even when a loader did not flag it; a version later than as_of archived then
    -- says nothing of as_of, so only an archival at or before as_of hides the contact
    where not (versions.is_archived and not versions.is_after_as_of)
)

select * from final
