-- Every scoring write of the models (ml.scoring_runs), and which one is served: per as-of date and table, the run
-- that committed last (max scored_at; a tie, which two writes of one table within a microsecond would need, goes to
-- the higher model_version text). The feed reads, per date and table, the rows of the served run's model version
-- only, so a rescoring with another version (a promotion, a rollback) replaces the version the feed shows for
-- that date without deleting the other version's rows. See DECISIONLOG.md, "The feed: served model versions".
with

runs as (
    select * from {{ source('ml', 'scoring_runs') }}
),

final as (
    select
        runs.as_of_date,
        runs.table_name,
        runs.model_version,
        runs.scored_at,
        runs.rows as rows_written,
        row_number() over (
            partition by runs.as_of_date, runs.table_name
            order by runs.scored_at desc, runs.model_version desc
        ) = 1 as is_served
    from runs
)

select * from final
