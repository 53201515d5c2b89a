-- Identity resolution: people are the connected components of a graph whose nodes are source records, normalized
-- emails and Shopify customers, and whose edges are
--   record -> its normalized email                (same email = same person, across and within sources)
--   Klaviyo profile -> the Shopify customer named by its external_id (only a customer existing at as_of).
-- Grain: one row per source record, with its component (the smallest node reachable from it) and the component's
-- customer_id: a surrogate key of the smallest normalized email in the component, or of the smallest record node
-- when no record in it has an email. The records of one email are one group from the start, so the recursion runs
-- over the groups that Klaviyo links join, not over every record and email: at a million customers all pairs of
-- reachable nodes were 14 s of every build.
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

-- Every record with an email sits in one group with that email's node; a record without one is a group alone.
-- A group is connected inside (each member links to the email node), so only the groups need the recursion.
records_grouped as (
    select
        records.record_node,
        records.source,
        records.linked_shopify_customer_id,
        cast(coalesce('email:' || records.email_normalized, records.record_node) as {{ dbt.type_string() }})
            as group_node
    from records
),

-- Klaviyo profile -> its Shopify customer's group (the customer's record exists at as_of; were it missing, its node
-- would be a group alone)
group_links as (
    select
        linking.group_node as from_group,
        cast(
            coalesce(linked.group_node, 'shopify_customer:' || linking.linked_shopify_customer_id)
            as {{ dbt.type_string() }}
        ) as to_group
    from records_grouped as linking
    -- the Shopify customer's own record node is 'shopify_customer:<gid>'
    left join records_grouped as linked
        on linked.record_node = 'shopify_customer:' || linking.linked_shopify_customer_id
    where linking.source = 'klaviyo_profile' and linking.linked_shopify_customer_id is not null
),

-- each group's nodes: its records, its email node, and a link target without a record
group_members as (
    select
        records_grouped.group_node,
        records_grouped.record_node as member_node
    from records_grouped

    union

    select
        records_grouped.group_node,
        records_grouped.group_node as member_node
    from records_grouped

    union

    select
        group_links.to_group as group_node,
        group_links.to_group as member_node
    from group_links
),

group_smallest_nodes as (
    select
        group_members.group_node,
        min({{ tailor.binary_text('group_members.member_node') }}) as smallest_node
    from group_members
    group by group_members.group_node
),

links as (
    select
        group_links.from_group as from_node,
        group_links.to_group as to_node
    from group_links
    where group_links.from_group <> group_links.to_group

    union

    select
        group_links.to_group as from_node,
        group_links.from_group as to_node
    from group_links
    where group_links.from_group <> group_links.to_group
),

-- reachability between linked groups only (union drops revisited pairs, so it terminates on cycles)
reachable (group_node, reached_group) as (
    select distinct
        links.from_node as group_node,
        links.from_node as reached_group
    from links

    union

    select
        reachable.group_node,
        links.to_node as reached_group
    from reachable
    inner join links
        on reachable.reached_group = links.from_node
),

linked_components as (
    select
        reachable.group_node,
        min({{ tailor.binary_text('group_smallest_nodes.smallest_node') }}) as component_node
    from reachable
    inner join group_smallest_nodes
        on reachable.reached_group = group_smallest_nodes.group_node
    group by reachable.group_node
),

components as (
    select
        records_grouped.record_node,
        coalesce(linked_components.component_node, group_smallest_nodes.smallest_node) as component_node
    from records_grouped
    inner join group_smallest_nodes
        on records_grouped.group_node = group_smallest_nodes.group_node
    left join linked_components
        on records_grouped.group_node = linked_components.group_node
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
