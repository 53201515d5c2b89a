{#- One row per (customer, product category) the customer interacted with at or before as_of: a recency-weighted
    affinity score and the category's rank within the customer.

    score = sum over interactions of weight(kind) * 0.5 ^ (age_days / affinity_half_life_days), where
    weight = 1.0 for a purchased order line (not cancelled, not fully refunded), 0.3 for a cart add and 0.1 for a
    product view (see DECISIONLOG.md). Interactions without a category are left out. -#}

{%- set purchase_weight = 1.0 -%}
{%- set cart_add_weight = 0.3 -%}
{%- set view_weight = 0.1 -%}

with

order_lines as (
    select
        customer_id,
        product_category,
        ordered_at as interacted_at
    from {{ ref('order_lines') }}
    where not is_cancelled
        and net_quantity > 0
        and customer_id is not null
        and product_category is not null
        and ordered_at <= {{ tailor.as_of() }}
),

onsite_events as (
    select
        customer_id,
        product_category,
        event_type,
        occurred_at as interacted_at
    from {{ ref('email_events') }}
    where event_type in ('viewed_product', 'added_to_cart')
        and customer_id is not null
        and product_category is not null
        and occurred_at <= {{ tailor.as_of() }}
),

interactions as (
    select
        order_lines.customer_id,
        order_lines.product_category,
        'purchase' as interaction,
        order_lines.interacted_at
    from order_lines

    union all

    select
        onsite_events.customer_id,
        onsite_events.product_category,
        case onsite_events.event_type when 'added_to_cart' then 'cart_add' else 'view' end as interaction,
        onsite_events.interacted_at
    from onsite_events
),

weighted as (
    select
        interactions.customer_id,
        interactions.product_category,
        interactions.interaction,
        interactions.interacted_at,
        -- exact decimals from here on, so sums do not depend on the order rows are added in (parallel aggregation)
        cast({{ tailor.decay_weight(
            tailor.days_between('interactions.interacted_at', tailor.as_of()),
            var('affinity_half_life_days'),
        ) }} as numeric(18, 12)) as decay
    from interactions
),

by_category as (
    select
        weighted.customer_id,
        weighted.product_category,
        sum(case when weighted.interaction = 'purchase' then 1 else 0 end) as purchased_lines,
        sum(case when weighted.interaction = 'cart_add' then 1 else 0 end) as cart_adds,
        sum(case when weighted.interaction = 'view' then 1 else 0 end) as product_views,
        sum(
            case when weighted.interaction = 'purchase' then {{ purchase_weight }} * weighted.decay else 0 end
        ) as purchase_score,
        sum(
            case when weighted.interaction = 'cart_add' then {{ cart_add_weight }} * weighted.decay else 0 end
        ) as cart_add_score,
        sum(case when weighted.interaction = 'view' then {{ view_weight }} * weighted.decay else 0 end) as view_score,
        max(weighted.interacted_at) as last_interaction_at
    from weighted
    group by weighted.customer_id, weighted.product_category
),

scored as (
    select
        by_category.customer_id,
        by_category.product_category,
        by_category.purchased_lines,
        by_category.cart_adds,
        by_category.product_views,
        by_category.purchase_score,
        by_category.cart_add_score,
        by_category.view_score,
        by_category.purchase_score + by_category.cart_add_score + by_category.view_score as affinity_score,
        by_category.last_interaction_at
    from by_category
),

final as (
    select
        scored.customer_id,
        scored.product_category,
        {{ tailor.as_of() }} as as_of_at,
        cast(scored.purchased_lines as integer) as purchased_lines,
        cast(scored.cart_adds as integer) as cart_adds,
        cast(scored.product_views as integer) as product_views,
        cast(scored.purchase_score as {{ tailor.type_double() }}) as purchase_score,
        cast(scored.cart_add_score as {{ tailor.type_double() }}) as cart_add_score,
        cast(scored.view_score as {{ tailor.type_double() }}) as view_score,
        cast(scored.affinity_score as {{ tailor.type_double() }}) as affinity_score,
        cast(
            round(
                scored.affinity_score / sum(scored.affinity_score) over (partition by scored.customer_id), 12
            ) as {{ tailor.type_double() }}
        ) as affinity_share,
        row_number() over (
            partition by scored.customer_id
            order by scored.affinity_score desc, scored.product_category asc
        ) as category_rank,
        scored.last_interaction_at
    from scored
)

select * from final
