{# Every non-null value of the column lies in [min_value, max_value] (rates, shares, completeness). #}
{% test cargo_between(model, column_name, min_value, max_value) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}
