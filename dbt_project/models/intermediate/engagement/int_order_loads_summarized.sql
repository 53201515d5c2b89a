{#- One row: how far the loaded Shopify order history reaches, for churn_labels' observability gate. Like
    int_orders_in_churn_horizon (which reads every parsed order version) it reads past as_of on purpose: the versions
    of raw.shopify_orders, whatever as_of is (only churn_labels uses it).
    data_complete_through_at is the latest order version loaded: every order change up to then is in raw, so a label
    window (T, T + horizon] ending at or before it is fully observed. -#}

with

raw_orders as (

    select updated_at
    from {{ source('shopify', 'orders') }}

),

final as (

    select
        max(updated_at) as data_complete_through_at,
        count(*) as order_versions_loaded
    from raw_orders

)

select * from final
