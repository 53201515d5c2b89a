{#- Klaviyo metric name -> Tailor's event_type (lowercase verb). Unknown metrics become 'other'. Used by
    stg_klaviyo__events: the categorizing is staging's, every model downstream reads event_type. -#}
{% macro klaviyo_event_type(metric_name) -%}
    case {{ metric_name }}
        when 'Received Email' then 'received'
        when 'Opened Email' then 'opened'
        when 'Clicked Email' then 'clicked'
        when 'Bounced Email' then 'bounced'
        when 'Marked Email as Spam' then 'marked_spam'
        when 'Unsubscribed' then 'unsubscribed'
        when 'Viewed Product' then 'viewed_product'
        when 'Added to Cart' then 'added_to_cart'
        when 'Started Checkout' then 'started_checkout'
        else 'other'
    end
{%- endmacro %}
