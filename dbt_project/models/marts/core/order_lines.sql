{#-
    Incremental, yet always equal to a full refresh for the current as_of, whatever as_of the previous run used
    (later, earlier, or the same). Each run compares the stored rows with the current as-of state of the
    orders mart and recomputes only the orders that differ:
      - an order whose stored version (order_updated_at) is not its as-of version, or that has no stored lines;
      - an order whose customer_id changed (identity resolution moved it);
      - an order with a line whose product category changed.
    Stored lines of those orders that no longer exist (and every line of an order that does not exist as of
    as_of, e.g. after moving as_of back) are replaced by tombstones — rows with only order_line_id set — which
    the post-hook deletes. See DECISIONLOG.md (incremental strategy).
-#}
{{
    config(
        materialized='incremental',
        unique_key='order_line_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook="delete from {{ this }} where order_id is null",
    )
}}

-- depends_on: {{ ref('orders') }}
-- depends_on: {{ ref('stg_shopify__products') }}

with

lines as (
    select
        order_line_id,
        order_id,
        customer_id,
        product_id,
        variant_id,
        product_category,
        ordered_at,
        quantity,
        refunded_quantity,
        net_quantity,
        net_line_amount,
        is_cancelled,
        currency_code,
        sku,
        product_title,
        unit_price_amount,
        gross_line_amount,
        refunded_amount,
        order_updated_at
    from {{ ref('int_order_lines_netted') }}
),

{% if is_incremental() %}

orders as (
    select
        order_id,
        customer_id,
        updated_at
    from {{ ref('orders') }}
),

products as (
    select
        product_id,
        product_category
    from {{ ref('stg_shopify__products') }}
),

stored as (
    select
        order_line_id,
        order_id,
        customer_id,
        product_id,
        product_category,
        order_updated_at
    from {{ this }}
),

stored_orders as (
    select
        stored.order_id,
        min(stored.order_updated_at) as min_order_updated_at,
        max(stored.order_updated_at) as max_order_updated_at,
        min(stored.customer_id) as min_customer_id,
        max(stored.customer_id) as max_customer_id,
        count(*) - count(stored.customer_id) as lines_without_customer
    from stored
    group by stored.order_id
),

recategorized_orders as (
    select distinct stored.order_id
    from stored
    left join products
        on stored.product_id = products.product_id
    where stored.product_category is distinct from products.product_category
),

changed_orders as (
    select orders.order_id
    from orders
    left join stored_orders
        on orders.order_id = stored_orders.order_id
    left join recategorized_orders
        on orders.order_id = recategorized_orders.order_id
    where
        stored_orders.order_id is null
        or recategorized_orders.order_id is not null
        or stored_orders.min_order_updated_at <> orders.updated_at
        or stored_orders.max_order_updated_at <> orders.updated_at
        or stored_orders.min_customer_id is distinct from orders.customer_id
        or stored_orders.max_customer_id is distinct from orders.customer_id
        or (stored_orders.lines_without_customer > 0 and orders.customer_id is not null)
),

upserts as (
    select lines.*
    from lines
    inner join changed_orders
        on lines.order_id = changed_orders.order_id
),

tombstones as (
    select stored.order_line_id
    from stored
    left join orders
        on stored.order_id = orders.order_id
    left join changed_orders
        on stored.order_id = changed_orders.order_id
    left join upserts
        on stored.order_line_id = upserts.order_line_id
    where
        (orders.order_id is null or changed_orders.order_id is not null)
        and upserts.order_line_id is null
),

final as (
    select * from upserts

    union all

    select
        tombstones.order_line_id,
        cast(null as {{ dbt.type_string() }}) as order_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as {{ dbt.type_string() }}) as product_id,
        cast(null as {{ dbt.type_string() }}) as variant_id,
        cast(null as {{ dbt.type_string() }}) as product_category,
        cast(null as {{ tailor.type_timestamp_tz() }}) as ordered_at,
        cast(null as integer) as quantity,
        cast(null as integer) as refunded_quantity,
        cast(null as integer) as net_quantity,
        cast(null as numeric(18, 2)) as net_line_amount,
        cast(null as boolean) as is_cancelled,
        cast(null as {{ dbt.type_string() }}) as currency_code,
        cast(null as {{ dbt.type_string() }}) as sku,
        cast(null as {{ dbt.type_string() }}) as product_title,
        cast(null as numeric(18, 2)) as unit_price_amount,
        cast(null as numeric(18, 2)) as gross_line_amount,
        cast(null as numeric(18, 2)) as refunded_amount,
        cast(null as {{ tailor.type_timestamp_tz() }}) as order_updated_at
    from tombstones
)

{% else %}

final as (
    select * from lines
)

{% endif %}

select * from final
