{#- One row: how far the loaded Shopify order history reaches, for churn_labels' observability gate. It reads past
    as_of on purpose (only churn_labels uses it).
    data_complete_through_at is the Shopify orders load watermark: every order change before it is in raw.* (the
    extract windows run from the previous watermark on, and the watermark moves only after a load commits), so a
    label window (T, T + horizon] ending at or before it is fully observed, whatever the latest order version is
    (a shop with no order on the window's last day still has a complete window). With known_at, the watermark as it
    stood then: the end of the latest window loaded by known_at (raw._batches; the watermark is that maximum). -#}

{%- set known = tailor.known_at() -%}

with

{% if known is none %}

watermarks as (

    select watermark
    from {{ source('loads', 'watermarks') }}
    where source = 'shopify' and entity = 'orders'

),

{% else %}

watermarks as (

    select window_end as watermark
    from {{ source('loads', 'batches') }}
    where source = 'shopify' and entity = 'orders' and loaded_at <= {{ known }}

),

{% endif %}

final as (

    select max(watermark) as data_complete_through_at
    from watermarks

)

select * from final
