{#-
    Order lines as of as_of, net of refunds and cancellations, with their order's customer (from the orders mart of
    the same run) and the product's category. Grain: one row per line item of a non-test order.
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

with

-- the orders mart of this run: each order's customer, time and cancellation, attributed once per build
orders as (
    select
        order_id,
        customer_id,
        ordered_at,
        is_cancelled,
        updated_at
    from {{ ref('orders') }}
),

products as (
    select
        product_id,
        product_category
    from {{ ref('stg_shopify__products') }}
),

{% if is_incremental() %}

-- read where used, not materialized: a copy of every stored line cost more than the three scans it saves
stored as not materialized (
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

-- orders with stored lines that do not exist as of as_of
removed_orders as (
    select stored_orders.order_id
    from stored_orders
    left join orders
        on stored_orders.order_id = orders.order_id
    where orders.order_id is null
),

{% endif %}

lines as (
    select
        order_line_id,
        order_id,
        product_id,
        variant_id,
        sku,
        product_title,
        quantity,
        unit_price_amount,
        line_amount,
        currency_code,
        order_updated_at
    from {{ ref('stg_shopify__order_lines') }}
    {% if is_incremental() -%}
    -- only the changed orders' lines, before the joins below (else they run over every line of every order)
    where order_id in (select changed_orders.order_id from changed_orders)
    {%- endif %}
),

refund_lines as (
    select
        order_line_id,
        quantity,
        subtotal_amount
    from {{ ref('stg_shopify__refund_lines') }}
),

refunds_per_line as (
    select
        refund_lines.order_line_id,
        cast(sum(refund_lines.quantity) as integer) as refunded_quantity,
        cast(sum(refund_lines.subtotal_amount) as numeric(18, 2)) as refunded_amount
    from refund_lines
    group by refund_lines.order_line_id
),

netted as (
    select
        lines.order_line_id,
        lines.order_id,
        orders.customer_id,
        lines.product_id,
        lines.variant_id,
        products.product_category,
        orders.ordered_at,
        lines.quantity,
        coalesce(refunds_per_line.refunded_quantity, 0) as refunded_quantity,
        cast(case
            when orders.is_cancelled then 0
            else lines.quantity - coalesce(refunds_per_line.refunded_quantity, 0)
        end as integer) as net_quantity,
        case
            when orders.is_cancelled then cast(0 as numeric(18, 2))
            else cast(lines.line_amount - coalesce(refunds_per_line.refunded_amount, 0) as numeric(18, 2))
        end as net_line_amount,
        orders.is_cancelled,
        lines.currency_code,
        lines.sku,
        lines.product_title,
        lines.unit_price_amount,
        lines.line_amount as gross_line_amount,
        coalesce(refunds_per_line.refunded_amount, cast(0 as numeric(18, 2))) as refunded_amount,
        lines.order_updated_at
    from lines
    inner join orders
        on lines.order_id = orders.order_id
    left join refunds_per_line
        on lines.order_line_id = refunds_per_line.order_line_id
    left join products
        on lines.product_id = products.product_id
),

{% if is_incremental() %}

-- stored lines of the changed and removed orders that the rebuilt lines do not replace
tombstones as (
    select affected.order_line_id
    from (
        select stored.order_line_id
        from stored
        where
            stored.order_id in (select changed_orders.order_id from changed_orders)
            or stored.order_id in (select removed_orders.order_id from removed_orders)
    ) as affected
    left join netted
        on affected.order_line_id = netted.order_line_id
    where netted.order_line_id is null
),

final as (
    select * from netted

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
    select * from netted
)

{% endif %}

select * from final
