{#- One row per interaction of a customer with a product at or before as_of, the event stream the recommendation and
    send-time models weight and split by time themselves (see DECISIONLOG.md, "Product interactions"):
      purchase  a purchased order line (not cancelled, net quantity > 0), at the order's time; source_id = the line
      cart_add  a Klaviyo "Added to Cart" event; source_id = the event
      view      a Klaviyo "Viewed Product" event; source_id = the event
    The same interactions customer_product_affinity scores per category, with the same categories (the product's
    as-of category for a purchase, the event's own for a view or cart add). Klaviyo's product_id is the Shopify
    product GID already (base_klaviyo__events builds it from the event's ProductID, the product's numeric id): on the
    demo warehouse every onsite event's product_id is a Product GID, and all of them but one deleted product's are in
    products. So purchases and events name a product the same way and join products on product_id. -#}

with

order_lines as (
    select
        order_line_id,
        customer_id,
        product_id,
        product_category,
        ordered_at
    from {{ ref('order_lines') }}
    where not is_cancelled
        and net_quantity > 0
        and customer_id is not null
        and product_id is not null
        and ordered_at <= {{ tailor.as_of() }}
),

onsite_events as (
    select
        event_id,
        customer_id,
        product_id,
        product_category,
        event_type,
        occurred_at
    from {{ ref('email_events') }}
    where event_type in ('viewed_product', 'added_to_cart')
        and customer_id is not null
        and product_id is not null
        and occurred_at <= {{ tailor.as_of() }}
),

interactions as (
    select
        order_lines.customer_id,
        order_lines.product_id,
        order_lines.product_category,
        'purchase' as interaction,
        order_lines.ordered_at as occurred_at,
        order_lines.order_line_id as source_id
    from order_lines

    union all

    select
        onsite_events.customer_id,
        onsite_events.product_id,
        onsite_events.product_category,
        case onsite_events.event_type when 'added_to_cart' then 'cart_add' else 'view' end as interaction,
        onsite_events.occurred_at,
        onsite_events.event_id as source_id
    from onsite_events
),

final as (
    select
        interactions.customer_id,
        interactions.product_id,
        interactions.product_category,
        interactions.interaction,
        interactions.occurred_at,
        interactions.source_id,
        {{ tailor.as_of() }} as as_of_at
    from interactions
)

select * from final
