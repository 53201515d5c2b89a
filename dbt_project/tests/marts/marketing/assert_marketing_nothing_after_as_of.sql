-- No marketing mart, no feature row and no product interaction carries a time after the run's as_of (future
-- leak guard).
-- churn_labels is the documented exception (its label looks past as_of by definition) and is not checked here.
{%- set as_of = tailor.as_of() %}

select
    'email_events' as model_name,
    event_id as row_key,
    occurred_at as leaked_at
from {{ ref('email_events') }}
where occurred_at > {{ as_of }}

union all

select
    'customer_rfm' as model_name,
    customer_id as row_key,
    last_order_at as leaked_at
from {{ ref('customer_rfm') }}
where last_order_at > {{ as_of }}

union all

select
    'customer_engagement' as model_name,
    customer_id as row_key,
    last_engaged_at as leaked_at
from {{ ref('customer_engagement') }}
where last_engaged_at > {{ as_of }}

union all

select
    'customer_product_affinity' as model_name,
    customer_id as row_key,
    last_interaction_at as leaked_at
from {{ ref('customer_product_affinity') }}
where last_interaction_at > {{ as_of }}

union all

select
    'customer_product_interactions' as model_name,
    source_id as row_key,
    occurred_at as leaked_at
from {{ ref('customer_product_interactions') }}
where occurred_at > {{ as_of }}

union all

select
    'customer_features' as model_name,
    customer_id as row_key,
    as_of_at as leaked_at
from {{ ref('customer_features') }}
where as_of_date = {{ tailor.utc_date(as_of) }}
    and as_of_at > {{ as_of }}
