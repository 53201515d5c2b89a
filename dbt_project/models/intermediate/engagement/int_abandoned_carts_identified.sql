{#- One row per open abandoned cart as of as_of: an "Added to Cart" event at most abandoned_cart_max_age_days old
    (added_at in (as_of - max age, as_of]) after which the same customer placed no order up to as_of. Any order
    counts, cancelled or not: the customer went through checkout, so the cart is no longer open. -#}

with

cart_adds as (
    select
        event_id,
        customer_id,
        occurred_at as added_at,
        product_id,
        product_category,
        value_amount
    from {{ ref('email_events') }}
    where event_type = 'added_to_cart'
        and customer_id is not null
        and occurred_at <= {{ tailor.as_of() }}
        and occurred_at > {{ tailor.add_days(tailor.as_of(), - var('abandoned_cart_max_age_days')) }}
),

orders as (
    select
        customer_id,
        ordered_at
    from {{ ref('orders') }}
    where ordered_at <= {{ tailor.as_of() }}
),

final as (
    select
        cart_adds.event_id,
        cart_adds.customer_id,
        cart_adds.added_at,
        cart_adds.product_id,
        cart_adds.product_category,
        cart_adds.value_amount,
        cast(
            {{ tailor.hours_between('cart_adds.added_at', tailor.as_of()) }} as {{ tailor.type_double() }}
        ) as age_hours
    from cart_adds
    where
        not exists (
            select 1
            from orders
            where orders.customer_id = cart_adds.customer_id
                and orders.ordered_at > cart_adds.added_at
        )
)

select * from final
