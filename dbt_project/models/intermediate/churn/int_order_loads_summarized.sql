{#- One row: how far the loaded Shopify order history reaches, for churn_labels' observability gate. It reads past
    as_of on purpose (only churn_labels uses it).
    data_complete_through_at is the Shopify orders load watermark (stg_loads__watermarks; with known_at, as it stood
    then): every order change before it is in raw.* (the extract windows run from the previous watermark on, and the
    watermark moves only after a load commits), so a label window (T, T + horizon] ending at or before it is fully
    observed, whatever the latest order version is (a shop with no order on the window's last day still has a
    complete window). The aggregate keeps the row when nothing was loaded yet (null). -#}
with

watermarks as (
    select watermarks.watermark
    from {{ ref('stg_loads__watermarks') }} as watermarks
    where watermarks.source = 'shopify' and watermarks.entity = 'orders'
),

final as (
    select max(watermarks.watermark) as data_complete_through_at
    from watermarks
)

select * from final
