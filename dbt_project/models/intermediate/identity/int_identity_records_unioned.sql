-- Every source record that identifies a person, as of as_of: one row per (source, source_record_id), with its
-- normalized email (lower(trim(email)), the identity key) and, for a Klaviyo profile, the Shopify customer its
-- external_id names when that account exists at as_of.
-- Guest checkouts are identified by their normalized email: one record per distinct email of the orders that
-- carry no live Shopify customer (no customer, or a customer deleted by as_of).
-- A table, unlike the other intermediate steps: as a view its as-of picks over five sources ran twice per build (its
-- key test, then inside the identity graph's recursion beside it), 86 s of the test alone at a million customers.
{{ config(materialized='table') }}

with

shopify_customers as (
    select
        shopify_customer_id,
        {{ tailor.normalize_email('email') }} as email_normalized,
        created_at,
        updated_at
    from {{ ref('stg_shopify__customers') }}
),

orders as (
    select
        shopify_customer_id,
        {{ tailor.normalize_email('email') }} as email_normalized,
        processed_at,
        updated_at,
        is_test
    from {{ ref('stg_shopify__orders') }}
),

hubspot_contacts as (
    select
        hubspot_contact_id,
        {{ tailor.normalize_email('email') }} as email_normalized,
        created_at,
        updated_at
    from {{ ref('stg_hubspot__contacts') }}
),

klaviyo_profiles as (
    select
        klaviyo_profile_id,
        {{ tailor.normalize_email('email') }} as email_normalized,
        shopify_customer_legacy_id,
        created_at,
        updated_at
    from {{ ref('stg_klaviyo__profiles') }}
),

guest_emails as (
    select
        orders.email_normalized,
        min(orders.processed_at) as created_at,
        max(orders.updated_at) as updated_at
    from orders
    left join shopify_customers
        on orders.shopify_customer_id = shopify_customers.shopify_customer_id
    where
        shopify_customers.shopify_customer_id is null
        and orders.email_normalized is not null
        and not orders.is_test
    group by orders.email_normalized
),

unioned as (
    select
        'shopify_customer' as source,
        shopify_customers.shopify_customer_id as source_record_id,
        shopify_customers.email_normalized,
        cast(null as {{ dbt.type_string() }}) as linked_shopify_customer_id,
        shopify_customers.created_at,
        shopify_customers.updated_at
    from shopify_customers

    union all

    select
        'shopify_guest_email' as source,
        guest_emails.email_normalized as source_record_id,
        guest_emails.email_normalized,
        cast(null as {{ dbt.type_string() }}) as linked_shopify_customer_id,
        guest_emails.created_at,
        guest_emails.updated_at
    from guest_emails

    union all

    select
        'hubspot_contact' as source,
        hubspot_contacts.hubspot_contact_id as source_record_id,
        hubspot_contacts.email_normalized,
        cast(null as {{ dbt.type_string() }}) as linked_shopify_customer_id,
        hubspot_contacts.created_at,
        hubspot_contacts.updated_at
    from hubspot_contacts

    union all

    select
        'klaviyo_profile' as source,
        klaviyo_profiles.klaviyo_profile_id as source_record_id,
        klaviyo_profiles.email_normalized,
        -- external_id is the Shopify customer's numeric id; link only to an account that exists as of as_of
        shopify_customers.shopify_customer_id as linked_shopify_customer_id,
        klaviyo_profiles.created_at,
        klaviyo_profiles.updated_at
    from klaviyo_profiles
    left join shopify_customers
        on
            klaviyo_profiles.shopify_customer_legacy_id is not null
            and shopify_customers.shopify_customer_id
            = 'gid://shopify/Customer/' || klaviyo_profiles.shopify_customer_legacy_id
),

final as (
    select
        unioned.source,
        unioned.source_record_id,
        unioned.source || ':' || unioned.source_record_id as record_node,
        unioned.email_normalized,
        unioned.linked_shopify_customer_id,
        unioned.created_at,
        unioned.updated_at
    from unioned
)

select * from final
