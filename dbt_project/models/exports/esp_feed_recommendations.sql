-- The lists of the feed as of as_of, relational: one row per (as_of_date, customer_id, rank) for the customers of
-- the feed (int_feed_customers_consented), from the recommender's served version for as_of's date
-- (stg_ml__customer_recommendations) with what a template shows of each product as of as_of (marts.products). A
-- product that cannot be offered as of as_of (deleted, unpublished or out of stock: not products.is_available) is
-- left out and the ranks after it move up, so rank runs 1..n in the model's order. esp_feed aggregates these rows
-- into its recommendations JSON. Incremental by date (dbt_project.yml): a build replaces its as_of_date only.
{%- set as_of_date = tailor.utc_date(tailor.as_of()) %}

with

audience as (
    select customer_id
    from {{ ref('int_feed_customers_consented') }}
),

recommendations as (
    select
        customer_id,
        rank as model_rank,
        product_id,
        reason
    from {{ ref('stg_ml__customer_recommendations') }}
    where as_of_date = {{ as_of_date }}
),

products as (
    select
        product_id,
        product_title,
        product_url,
        image_url,
        price_amount
    from {{ ref('products') }}
    where is_available
),

final as (
    select
        {{ as_of_date }} as as_of_date,
        recommendations.customer_id,
        cast(row_number() over (
            partition by recommendations.customer_id
            order by recommendations.model_rank asc
        ) as integer) as rank,
        recommendations.product_id,
        products.product_title,
        products.product_url,
        products.image_url,
        products.price_amount as price,
        recommendations.reason
    from recommendations
    inner join audience
        on recommendations.customer_id = audience.customer_id
    inner join products
        on recommendations.product_id = products.product_id
)

select * from final
