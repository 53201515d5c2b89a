{#- Churn labels for the training as-of T = as_of and horizon h = churn_horizon_days: one row per customer with at
    least one non-cancelled order at or before T. is_churned = the customer placed no non-cancelled order in
    (T, T + h]. The label is only known once every order change up to T + h is loaded, so rows exist only when T + h
    is before the Shopify orders load watermark (int_order_loads_summarized; an exclusive window end); otherwise the
    model is empty, on purpose.

    The only mart that looks past as_of: the future orders come from int_orders_in_churn_horizon, which reads raw
    orders up to T + h. customer_features never reads them. The population and last_order_at come from the as-of-T
    orders mart, like the features they are joined to. -#}

with

orders as (
    select
        customer_id,
        ordered_at
    from {{ ref('orders') }}
    where not is_cancelled
        and customer_id is not null
        and ordered_at <= {{ tailor.as_of() }}
),

horizon_orders as (
    select
        customer_id,
        ordered_at
    from {{ ref('int_orders_in_churn_horizon') }}
    where customer_id is not null
),

loads as (
    select data_complete_through_at
    from {{ ref('int_order_loads_summarized') }}
),

population as (
    select
        orders.customer_id,
        count(*) as orders_to_as_of,
        max(orders.ordered_at) as last_order_at
    from orders
    group by orders.customer_id
),

future as (
    select
        horizon_orders.customer_id,
        count(*) as orders_in_horizon,
        min(horizon_orders.ordered_at) as next_order_at
    from horizon_orders
    group by horizon_orders.customer_id
),

labelled as (
    select
        population.customer_id,
        population.orders_to_as_of,
        population.last_order_at,
        coalesce(future.orders_in_horizon, 0) as orders_in_horizon,
        future.next_order_at,
        {{ tailor.add_days(tailor.as_of(), var('churn_horizon_days')) }} as label_observable_at,
        loads.data_complete_through_at
    from population
    cross join loads
    left join future
        on population.customer_id = future.customer_id
),

final as (
    select
        labelled.customer_id,
        {{ tailor.as_of() }} as as_of_at,
        {{ tailor.utc_date(tailor.as_of()) }} as as_of_date,
        cast({{ var('churn_horizon_days') }} as integer) as churn_horizon_days,
        labelled.label_observable_at,
        cast(labelled.orders_to_as_of as integer) as orders_to_as_of,
        labelled.last_order_at,
        {{ tailor.whole_days_between('labelled.last_order_at', tailor.as_of()) }} as days_since_last_order,
        cast(labelled.orders_in_horizon as integer) as orders_in_horizon,
        labelled.next_order_at,
        labelled.orders_in_horizon = 0 as is_churned
    from labelled
    where labelled.label_observable_at < labelled.data_complete_through_at
)

select * from final
