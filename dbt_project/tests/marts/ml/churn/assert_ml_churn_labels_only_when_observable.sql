-- churn_labels holds rows only when the horizon end is before the orders load watermark (every change up to it is
-- loaded), and every row's label agrees with its horizon order count.
select
    labels.customer_id,
    labels.label_observable_at,
    loads.data_complete_through_at
from {{ ref('churn_labels') }} as labels
cross join {{ ref('int_order_loads_summarized') }} as loads
where labels.label_observable_at >= loads.data_complete_through_at
    or loads.data_complete_through_at is null
    or labels.is_churned != (labels.orders_in_horizon = 0)
    or labels.label_observable_at <= labels.as_of_at
