-- Identity resolution: people are the connected components of a graph whose nodes are source records, normalized
-- emails and Shopify customers, and whose edges are
--   record -> its normalized email                (same email = same person, across and within sources)
--   Klaviyo profile -> the Shopify customer named by its external_id (only a customer existing at as_of).
-- Grain: one row per source record, with its component (the smallest node reachable from it) and the component's
-- customer_id: a surrogate key of the smallest normalized email in the component, or of the smallest record node
-- when no record in it has an email. Reachability is a portable recursive CTE (union drops revisited pairs, so it
-- terminates on cycles); it costs the sum of squared component sizes — a handful of records per real person.
with recursive

records as (
    select
        source,
        source_record_id,
        record_node,
        email_normalized,
        linked_shopify_customer_id
    from {{ ref('int_identity_records_unioned') }}
),

one_way_links as (
    select
        records.record_node as from_node,
        'email:' || records.email_normalized as to_node
    from records
    where records.email_normalized is not null

    union all

    select
        records.record_node as from_node,
        -- the Shopify customer's own record node is 'shopify_customer:<gid>'
        'shopify_customer:' || records.linked_shopify_customer_id as to_node
    from records
    where records.source = 'klaviyo_profile' and records.linked_shopify_customer_id is not null
),

links as (
    select
        cast(one_way_links.from_node as {{ dbt.type_string() }}) as from_node,
        cast(one_way_links.to_node as {{ dbt.type_string() }}) as to_node
    from one_way_links

    union

    select
        cast(one_way_links.to_node as {{ dbt.type_string() }}) as from_node,
        cast(one_way_links.from_node as {{ dbt.type_string() }}) as to_node
    from one_way_links
),

reachable (record_node, reached_node) as (
    select
        cast(records.record_node as {{ dbt.type_string() }}) as record_node,
        cast(records.record_node as {{ dbt.type_string() }}) as reached_node
    from records

    union

    select
        reachable.record_node,
        links.to_node as reached_node
    from reachable
    inner join links
        on reachable.reached_node = links.from_node
),

components as (
    select
        reachable.record_node,
        min({{ tailor.binary_text('reachable.reached_node') }}) as component_node
    from reachable
    group by reachable.record_node
),

component_keys as (
    select
        components.component_node,
        min({{ tailor.binary_text('records.email_normalized') }}) as smallest_email,
        min({{ tailor.binary_text('records.record_node') }}) as smallest_record_node,
        count(*) as component_record_count
    from components
    inner join records
        on components.record_node = records.record_node
    group by components.component_node
),

final as (
    select
        records.source,
        records.source_record_id,
        records.record_node,
        records.email_normalized,
        records.linked_shopify_customer_id,
        components.component_node,
        component_keys.smallest_email as component_email,
        component_keys.component_record_count,
        {{ tailor.surrogate_key([
            "coalesce('email:' || component_keys.smallest_email, component_keys.smallest_record_node)"
        ]) }} as customer_id
    from records
    inner join components
        on records.record_node = components.record_node
    inner join component_keys
        on components.component_node = component_keys.component_node
)

select * from final
