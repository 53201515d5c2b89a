{#- A customer's email consent state (subscribed | unsubscribed | never_subscribed | bounced | spam_complaint |
    unknown): the Klaviyo profile's consent when the person has a profile (the ESP is the system of record for email
    consent), else the Shopify account's marketing state mapped onto the same set, else never_subscribed. unknown:
    the record's loaded versions are all later than as_of and its consent changed after as_of (staging), so its
    state at as_of cannot be known; never marketable. -#}
{% macro email_consent_state(klaviyo_consent, shopify_marketing_state) -%}
    coalesce(
        {{ klaviyo_consent }},
        case {{ shopify_marketing_state }}
            when 'subscribed' then 'subscribed'
            when 'unsubscribed' then 'unsubscribed'
            when 'redacted' then 'unsubscribed'
            when 'invalid' then 'bounced'
            when 'not_subscribed' then 'never_subscribed'
            when 'pending' then 'never_subscribed'
            when 'unknown' then 'unknown'
        end,
        'never_subscribed'
    )
{%- endmacro %}
