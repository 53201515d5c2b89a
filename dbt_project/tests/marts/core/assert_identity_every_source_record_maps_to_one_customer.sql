-- Every Shopify customer, HubSpot contact and Klaviyo profile existing at as_of (read straight from raw.* by the
-- two-time rule, macros/as_of.sql) maps to exactly one customer_id in the crosswalk, and the crosswalk holds no
-- record that does not exist at as_of.
-- Every non-test order's guest email is covered through orders.customer_id (see assert_core_order_totals_*).
with

raw_records as (
    select
        'shopify_customer' as source,
        versions.record_id as source_record_id
    from ({{ tailor.raw_state_as_of(
        source('shopify', 'customers'), tailor.json_text('versions.payload', ['createdAt'])
    ) }}) as versions

    union all

    select
        'hubspot_contact' as source,
        versions.record_id as source_record_id
    from ({{ tailor.raw_state_as_of(
        source('hubspot', 'contacts'),
        'coalesce(' ~ tailor.json_text('versions.payload', ['createdAt']) ~ ', '
        ~ tailor.json_text('versions.payload', ['properties', 'createdate']) ~ ')'
    ) }}) as versions
    -- archived by as_of; an archived version later than as_of says nothing of as_of
    where versions.is_after_as_of
        or coalesce(cast({{ tailor.json_text('versions.payload', ['archived']) }} as boolean), false) = false

    union all

    select
        'klaviyo_profile' as source,
        versions.record_id as source_record_id
    from ({{ tailor.raw_state_as_of(
        source('klaviyo', 'profiles'), tailor.json_text('versions.payload', ['attributes', 'created'])
    ) }}) as versions
),

mapped as (
    select
        source,
        source_record_id,
        count(*) as mapped_rows,
        count(distinct customer_id) as customer_ids
    from {{ ref('customer_identity_crosswalk') }}
    where source in ('shopify_customer', 'hubspot_contact', 'klaviyo_profile')
    group by source, source_record_id
),

final as (
    select
        coalesce(raw_records.source, mapped.source) as source,
        coalesce(raw_records.source_record_id, mapped.source_record_id) as source_record_id,
        case
            when mapped.source is null then 'missing from crosswalk'
            when raw_records.source is null then 'in crosswalk but not in raw as of as_of'
            else 'maps to ' || cast(mapped.customer_ids as {{ dbt.type_string() }}) || ' customer_ids in '
                || cast(mapped.mapped_rows as {{ dbt.type_string() }}) || ' rows'
        end as problem
    from raw_records
    full outer join mapped
        on raw_records.source = mapped.source and raw_records.source_record_id = mapped.source_record_id
    where
        mapped.source is null
        or raw_records.source is null
        or mapped.mapped_rows <> 1
        or mapped.customer_ids <> 1
)

select * from final
