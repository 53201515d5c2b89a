-- The feed's audience as of as_of: one row per customer who may receive marketing email, with what the feed says
-- about them before any model's output: the greeting and the experiment group. Consent: only customers whose
-- consent state is subscribed (customers.is_email_marketable) with an address the ESP accepts; unsubscribed,
-- bounced, spam-complaint, never-subscribed and unknown-consent customers are never in the feed.
-- Experiment group: tailor.experiment_group (a salted md5 of the customer id), stable across dates.
-- DECISIONLOG.md, "The feed".
with

customers as (
    select
        customer_id,
        email,
        first_name,
        date_of_birth,
        email_consent_state,
        is_email_marketable,
        shopify_customer_id,
        klaviyo_profile_id,
        currency_code,
        last_order_at
    from {{ ref('customers') }}
),

consented as (
    select
        customers.customer_id,
        customers.email,
        nullif(trim(customers.first_name), '') as first_name,
        customers.date_of_birth,
        customers.email_consent_state,
        customers.shopify_customer_id,
        customers.klaviyo_profile_id,
        customers.currency_code,
        customers.last_order_at
    from customers
    where customers.is_email_marketable
        and customers.email_consent_state = 'subscribed'
        and {{ tailor.is_valid_email('customers.email') }}
),

final as (
    select
        consented.customer_id,
        consented.email,
        consented.first_name,
        coalesce(consented.first_name, {{ tailor.string_literal(var('feed_first_name_fallback')) }}) as greeting_name,
        consented.first_name is not null as has_first_name,
        consented.email_consent_state,
        consented.shopify_customer_id,
        consented.klaviyo_profile_id,
        consented.currency_code,
        consented.date_of_birth,
        consented.last_order_at,
        {{ tailor.experiment_group('consented.customer_id') }} as experiment_group,
        {{ tailor.experiment_salt() }} as experiment_salt
    from consented
)

select * from final
