{#- One row per Shopify product existing at as_of: its catalogue state then (staging's two-time rule: status, price
    and stock are null when unknown at as_of), whether it can be recommended (published and in stock), and what its
    buyers did by as_of. A buyer is a customer with a purchased order line of the product (not cancelled, net quantity
    > 0) placed at or before as_of; a repeat buyer bought it on two or more distinct orders. repeat_purchase_rate is
    per buyer, not per order (see DECISIONLOG.md, "Products"). -#}

with

products as (

    select
        product_id,
        product_legacy_id,
        product_title,
        handle,
        product_category,
        vendor,
        status,
        online_store_url,
        image_url,
        created_at
    from {{ ref('stg_shopify__products') }}

),

variants as (

    select
        product_id,
        price_amount,
        inventory_quantity
    from {{ ref('stg_shopify__product_variants') }}

),

purchased_lines as (

    select
        product_id,
        customer_id,
        order_id,
        net_quantity,
        ordered_at
    from {{ ref('order_lines') }}
    where not is_cancelled
        and net_quantity > 0
        and customer_id is not null
        and product_id is not null
        and ordered_at <= {{ tailor.as_of() }}

),

variant_stats as (

    select
        product_id,
        count(*) as variant_count,
        min(price_amount) as price_amount,
        -- unknown (null) when any variant's stock is unknown: a product reduced to as_of has no stock figures
        case when count(inventory_quantity) = count(*) then sum(inventory_quantity) end as inventory_quantity
    from variants
    group by product_id

),

buyer_stats as (

    select
        product_id,
        customer_id,
        {{ tailor.has_two_distinct('order_id') }} as bought_on_two_orders,
        sum(net_quantity) as units,
        max(ordered_at) as last_ordered_at
    from purchased_lines
    group by product_id, customer_id

),

sales as (

    select
        product_id,
        count(*) as buyers,
        sum(case when bought_on_two_orders then 1 else 0 end) as repeat_buyers,
        sum(units) as units_sold,
        max(last_ordered_at) as last_ordered_at
    from buyer_stats
    group by product_id

),

final as (

    select
        products.product_id,
        products.product_legacy_id,
        products.product_title,
        products.handle,
        products.product_category,
        products.vendor,
        products.status,
        products.status = 'active' as is_published,
        products.status = 'archived' as is_archived,
        products.online_store_url as product_url,
        products.image_url,
        variant_stats.price_amount,
        cast(coalesce(variant_stats.variant_count, 0) as integer) as variant_count,
        cast(variant_stats.inventory_quantity as integer) as inventory_quantity,
        coalesce(variant_stats.inventory_quantity > 0, false) as is_in_stock,
        coalesce(products.status = 'active' and variant_stats.inventory_quantity > 0, false) as is_available,
        cast(coalesce(sales.buyers, 0) as integer) as buyers,
        cast(coalesce(sales.repeat_buyers, 0) as integer) as repeat_buyers,
        cast(
            {{ tailor.safe_divide('sales.repeat_buyers', 'sales.buyers') }} as {{ tailor.type_double() }}
        ) as repeat_purchase_rate,
        cast(coalesce(sales.units_sold, 0) as integer) as units_sold,
        sales.last_ordered_at,
        products.created_at,
        {{ tailor.as_of() }} as as_of_at
    from products
    left join variant_stats
        on products.product_id = variant_stats.product_id
    left join sales
        on products.product_id = sales.product_id

)

select * from final
