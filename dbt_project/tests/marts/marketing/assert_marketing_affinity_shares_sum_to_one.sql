-- Each customer's affinity shares sum to 1 and ranks run 1..n without gaps.
select
    customer_id,
    sum(affinity_share) as share_total,
    count(*) as categories,
    max(category_rank) as max_rank
from {{ ref('customer_product_affinity') }}
group by customer_id
having abs(sum(affinity_share) - 1) > 1e-9
    or max(category_rank) != count(*)
    or min(category_rank) != 1
