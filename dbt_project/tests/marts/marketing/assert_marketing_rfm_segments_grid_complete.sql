-- The RFM segment map covers the 5 x 5 (r_score, fm_score) grid exactly once and names all 11 segments.
-- Returns a row per problem.
with

cells as (

    select
        r_score,
        fm_score,
        count(*) as mapped
    from {{ ref('rfm_segments') }}
    group by r_score, fm_score

),

problems as (

    select 'cell mapped more than once' as problem
    from cells
    where mapped > 1

    union all

    select 'grid is not 25 cells' as problem
    from (select count(*) as n from cells) as grid
    where grid.n != 25

    union all

    select 'segment never used' as problem
    from {{ ref('rfm_segment_shopify_groups') }} as groups
    where
        not exists (
            select 1
            from {{ ref('rfm_segments') }} as segments
            where segments.rfm_segment = groups.rfm_segment
        )

    union all

    select 'not 11 segments' as problem
    from (select count(distinct rfm_segment) as n from {{ ref('rfm_segments') }}) as named
    where named.n != 11

)

select * from problems
