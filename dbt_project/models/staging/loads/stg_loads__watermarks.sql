{#- The load watermark per source and entity: every change before it is in raw.* (an exclusive window end). It
    reads past as_of on purpose (what has been loaded, not what had happened by as_of): only the churn labels'
    observability gate uses it. With known_at, the watermark as it stood then: the end of the latest window loaded by
    known_at (raw._batches; the watermark is that maximum, and it never moves backwards). -#}

{%- set known = tailor.known_at() -%}

with

{% if known is none -%}

watermarks as (
    select
        watermarks.source,
        watermarks.entity,
        watermarks.watermark
    from {{ source('loads', 'watermarks') }} as watermarks
),

{%- else -%}

watermarks as (
    select
        batches.source,
        batches.entity,
        max(batches.window_end) as watermark
    from {{ source('loads', 'batches') }} as batches
    where batches.loaded_at <= {{ known }}
    group by batches.source, batches.entity
),

{%- endif %}

final as (
    select
        watermarks.source,
        watermarks.entity,
        watermarks.watermark
    from watermarks
)

select * from final
