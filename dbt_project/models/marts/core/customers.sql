-- Unified customers as of as_of. Grain: one row per customer_id (one person across Shopify, guest checkouts,
-- HubSpot and Klaviyo; see customer_identity_crosswalk). Profile fields are coalesced by a fixed source
-- precedence (DECISIONLOG.md): Shopify account > Klaviyo profile > HubSpot contact > guest checkout.
with

crosswalk as (
    select
        source,
        source_record_id,
        customer_id,
        email_normalized
    from {{ ref('customer_identity_crosswalk') }}
),

shopify_customers as (
    select
        shopify_customer_id,
        email_normalized,
        first_name,
        last_name,
        phone,
        city,
        region_code,
        country_code,
        country,
        zip,
        email_marketing_state,
        created_at,
        updated_at
    from {{ ref('stg_shopify__customers') }}
),

hubspot_contacts as (
    select
        hubspot_contact_id,
        email_normalized,
        first_name,
        last_name,
        phone,
        city,
        country,
        zip,
        date_of_birth,
        created_at,
        updated_at
    from {{ ref('stg_hubspot__contacts') }}
),

klaviyo_profiles as (
    select
        klaviyo_profile_id,
        email_normalized,
        first_name,
        last_name,
        phone,
        city,
        region,
        country,
        zip,
        timezone,
        date_of_birth,
        email_consent,
        email_consent_at,
        created_at,
        updated_at
    from {{ ref('stg_klaviyo__profiles') }}
),

orders as (
    select
        customer_id,
        ordered_at,
        is_cancelled,
        net_sales_amount,
        currency_code
    from {{ ref('orders') }}
),

-- per customer and source, the most recently updated record represents the source
shopify_latest as (
    {{ tailor.latest_record_per_customer('shopify_customers', 'shopify_customer', 'shopify_customer_id') }}
),

hubspot_latest as (
    {{ tailor.latest_record_per_customer('hubspot_contacts', 'hubspot_contact', 'hubspot_contact_id') }}
),

klaviyo_latest as (
    {{ tailor.latest_record_per_customer('klaviyo_profiles', 'klaviyo_profile', 'klaviyo_profile_id') }}
),

-- country names as HubSpot and Klaviyo write them -> ISO codes, learnt from Shopify addresses (name and code)
country_codes as (
    select
        lower(shopify_customers.country) as country_name,
        min(shopify_customers.country_code) as country_code
    from shopify_customers
    where shopify_customers.country is not null and shopify_customers.country_code is not null
    group by lower(shopify_customers.country)
),

identities as (
    select
        crosswalk.customer_id,
        min(case when crosswalk.source = 'shopify_guest_email' then crosswalk.email_normalized end) as guest_email,
        min(crosswalk.email_normalized) as any_email
    from crosswalk
    group by crosswalk.customer_id
),

-- hubspot contacts and guest checkouts: the earliest creation across all of a person's records
created as (
    select
        crosswalk.customer_id,
        min(coalesce(shopify_customers.created_at, hubspot_contacts.created_at, klaviyo_profiles.created_at))
            as record_created_at
    from crosswalk
    left join shopify_customers
        on crosswalk.source = 'shopify_customer' and crosswalk.source_record_id = shopify_customers.shopify_customer_id
    left join hubspot_contacts
        on crosswalk.source = 'hubspot_contact' and crosswalk.source_record_id = hubspot_contacts.hubspot_contact_id
    left join klaviyo_profiles
        on crosswalk.source = 'klaviyo_profile' and crosswalk.source_record_id = klaviyo_profiles.klaviyo_profile_id
    group by crosswalk.customer_id
),

order_summary as (
    select
        orders.customer_id,
        min(orders.ordered_at) as first_order_at,
        max(orders.ordered_at) as last_order_at,
        count(*) as order_count,
        cast(sum(orders.net_sales_amount) as numeric(18, 2)) as net_sales_amount,
        min(orders.currency_code) as currency_code
    from orders
    where not orders.is_cancelled and orders.customer_id is not null
    group by orders.customer_id
),

all_orders as (
    select
        orders.customer_id,
        min(orders.ordered_at) as first_placed_at
    from orders
    where orders.customer_id is not null
    group by orders.customer_id
),

joined as (
    select
        identities.customer_id,
        coalesce(
            shopify.email_normalized, klaviyo.email_normalized, hubspot.email_normalized, identities.guest_email,
            identities.any_email
        ) as email,
        coalesce(shopify.first_name, klaviyo.first_name, hubspot.first_name) as first_name,
        coalesce(shopify.last_name, klaviyo.last_name, hubspot.last_name) as last_name,
        coalesce(shopify.phone, klaviyo.phone, hubspot.phone) as phone,
        -- the address is taken whole from the first source that has one, never mixed across sources
        case
            when shopify.city is not null or shopify.country_code is not null then 'shopify'
            when klaviyo.city is not null or klaviyo.country is not null then 'klaviyo'
            when hubspot.city is not null or hubspot.country is not null then 'hubspot'
        end as address_source,
        shopify.city as shopify_city,
        shopify.region_code as shopify_region,
        shopify.country_code as shopify_country_code,
        shopify.zip as shopify_zip,
        klaviyo.city as klaviyo_city,
        klaviyo.region as klaviyo_region,
        klaviyo_country.country_code as klaviyo_country_code,
        klaviyo.zip as klaviyo_zip,
        hubspot.city as hubspot_city,
        hubspot_country.country_code as hubspot_country_code,
        hubspot.zip as hubspot_zip,
        klaviyo.timezone,
        coalesce(hubspot.date_of_birth, klaviyo.date_of_birth) as date_of_birth,
        klaviyo.email_consent as klaviyo_email_consent,
        shopify.email_marketing_state as shopify_email_marketing_state,
        shopify.shopify_customer_id,
        hubspot.hubspot_contact_id,
        klaviyo.klaviyo_profile_id,
        order_summary.first_order_at,
        order_summary.last_order_at,
        coalesce(order_summary.order_count, 0) as order_count,
        coalesce(order_summary.net_sales_amount, cast(0 as numeric(18, 2))) as net_sales_amount,
        coalesce(order_summary.currency_code, '{{ var("shop_currency") }}') as currency_code,
        case
            when all_orders.first_placed_at < created.record_created_at or created.record_created_at is null
                then all_orders.first_placed_at
            else created.record_created_at
        end as customer_created_at
    from identities
    left join shopify_latest as shopify
        on identities.customer_id = shopify.customer_id
    left join klaviyo_latest as klaviyo
        on identities.customer_id = klaviyo.customer_id
    left join hubspot_latest as hubspot
        on identities.customer_id = hubspot.customer_id
    left join country_codes as klaviyo_country
        on lower(klaviyo.country) = klaviyo_country.country_name
    left join country_codes as hubspot_country
        on lower(hubspot.country) = hubspot_country.country_name
    left join order_summary
        on identities.customer_id = order_summary.customer_id
    left join all_orders
        on identities.customer_id = all_orders.customer_id
    left join created
        on identities.customer_id = created.customer_id
),

final as (
    select
        joined.customer_id,
        joined.email,
        joined.first_name,
        joined.last_name,
        joined.phone,
        case joined.address_source
            when 'shopify' then joined.shopify_city
            when 'klaviyo' then joined.klaviyo_city
            when 'hubspot' then joined.hubspot_city
        end as city,
        case joined.address_source
            when 'shopify' then joined.shopify_region
            when 'klaviyo' then joined.klaviyo_region
        end as region,
        case joined.address_source
            when 'shopify' then joined.shopify_country_code
            when 'klaviyo' then joined.klaviyo_country_code
            when 'hubspot' then joined.hubspot_country_code
        end as country_code,
        case joined.address_source
            when 'shopify' then joined.shopify_zip
            when 'klaviyo' then joined.klaviyo_zip
            when 'hubspot' then joined.hubspot_zip
        end as zip,
        joined.timezone,
        joined.date_of_birth,
        case
            when joined.order_count = 0 then 'prospect'
            when
                joined.last_order_at
                < {{ dbt.dateadd('day', -1 * var('lifecycle_churn_days'), tailor.as_of()) }}
                then 'churned'
            when joined.order_count = 1 then 'new'
            else 'repeat'
        end as lifecycle_stage,
        {{ tailor.email_consent_state('joined.klaviyo_email_consent', 'joined.shopify_email_marketing_state') }}
            as email_consent_state,
        joined.email is not null
        and {{ tailor.email_consent_state('joined.klaviyo_email_consent', 'joined.shopify_email_marketing_state') }}
        = 'subscribed' as is_email_marketable,
        joined.shopify_customer_id,
        joined.first_order_at,
        joined.last_order_at,
        joined.order_count,
        joined.net_sales_amount,
        joined.currency_code,
        joined.customer_created_at,
        joined.hubspot_contact_id,
        joined.klaviyo_profile_id,
        joined.address_source
    from joined
)

select * from final
